"""PQ / SQ / RQ on COCO panoptic data without panopticapi."""
import os.path as osp
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

import mmcv
import numpy as np
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.evaluation.metrics import coco_panoptic_metric
from mmdet.registry import METRICS
from mmengine.evaluator import BaseMetric
from mmengine.fileio import get, get_local_path, load
from mmengine.logging import MMLogger

from ..functional import PQStat, pq_stat_single_image, rgb2id

#: MMDetection's table rows: all classes, the things, the stuff.
SPLITS = (('All', None), ('Things', True), ('Stuff', False))


@METRICS.register_module()
class CocoPanopticQualityMetric(BaseMetric):
    """COCO panoptic quality, computed here (``CocoPanopticMetric`` of
    MMDetection needs panopticapi, which PyPI does not carry).

    The same keys (``coco_panoptic/PQ``, ``SQ``, ``RQ`` and their ``_th`` /
    ``_st`` splits, in percent) and tables as MMDetection's metric. Each
    image is scored as it arrives (:mod:`..functional.panoptic_quality`);
    nothing is written to disk.

    The ground truth comes from ``ann_file`` (a COCO panoptic JSON) and the
    PNGs in ``seg_prefix``, as with MMDetection's metric; without
    ``ann_file`` it comes from each data sample's ``segments_info`` and
    ``seg_map_path`` (add both to ``PackDetInputs``' ``meta_keys``).

    With ``ann_file``, a category that segments of the file use but the
    dataset's classes lack (or that the file's ``categories`` list lacks)
    is an error naming it, raised when the dataset's meta is set: its
    segments would otherwise drop out of PQ unnoticed.

    Args:
        ann_file (str, optional): COCO panoptic JSON of the split.
        seg_prefix (str, optional): Folder of its panoptic PNGs; needed with
            ``ann_file``.
        classwise (bool): Also print PQ / SQ / RQ of every class.
        backend_args (dict, optional): File backend arguments.
        collect_device (str): ``'cpu'`` or ``'gpu'``.
        prefix (str, optional): Metric name prefix; ``'coco_panoptic'``.
    """
    default_prefix: Optional[str] = 'coco_panoptic'

    def __init__(self,
                 ann_file: Optional[str] = None,
                 seg_prefix: Optional[str] = None,
                 classwise: bool = False,
                 backend_args: Optional[dict] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.classwise = classwise
        self.backend_args = backend_args
        self.seg_prefix = seg_prefix
        self.ann_file = ann_file
        self.gt_annotations: Optional[Dict[int, dict]] = None
        self.json_categories: Optional[Dict[int, dict]] = None
        self.segment_counts: Dict[int, int] = {}
        if ann_file:
            if seg_prefix is None:
                raise ValueError(
                    f'CocoPanopticQualityMetric(ann_file={ann_file!r}) needs '
                    'seg_prefix: the folder of the panoptic PNGs.')
            self._load_ann_file(ann_file)

    def _load_ann_file(self, ann_file: str) -> None:
        """Read the panoptic JSON: annotations by image id, categories."""
        with get_local_path(ann_file, backend_args=self.backend_args) as path:
            coco = load(path)
        for key in ('annotations', 'categories'):
            if key not in coco:
                raise KeyError(f'{ann_file}: no "{key}" list; is this a COCO '
                               'panoptic file (panoptic_*.json)?')
        self.gt_annotations = {a['image_id']: a for a in coco['annotations']}
        self.json_categories = {c['id']: c for c in coco['categories']}
        self.segment_counts = Counter(
            segment['category_id'] for annotation in coco['annotations']
            for segment in annotation.get('segments_info', []))
        undeclared = sorted(
            set(self.segment_counts) - set(self.json_categories))
        if undeclared:
            raise ValueError(
                f'{ann_file}: segments use category ids {undeclared}, which '
                'are not in its "categories" list '
                f'({sorted(self.json_categories)}); add those categories to '
                'the file (id, name, isthing) or fix the segments.')

    @BaseMetric.dataset_meta.setter
    def dataset_meta(self, dataset_meta: dict) -> None:
        """Set the dataset's meta; with ``ann_file`` its classes are checked
        against the file's categories at once, before any image is scored.
        """
        self._dataset_meta = dataset_meta
        if self.json_categories is not None:
            self.categories()

    def categories(self) -> Tuple[Dict[int, dict], Dict[int, int]]:
        """Categories keyed by the ids the ground truth uses, in class order,
        and the map from the model's labels to those ids."""
        classes = self.dataset_meta['classes']
        thing_classes = set(self.dataset_meta['thing_classes'])
        if self.json_categories is None:
            categories = {
                label:
                dict(id=label, name=name, isthing=int(name in thing_classes))
                for label, name in enumerate(classes)
            }
            return categories, {label: label for label in categories}
        by_name = {c['name']: c for c in self.json_categories.values()}
        unknown = [name for name in classes if name not in by_name]
        if unknown:
            raise KeyError(
                f'{self.ann_file}: classes {unknown} of the dataset are not '
                f'categories of the file ({sorted(by_name)}); make the '
                "config's metainfo classes the file's category names.")
        self._check_no_unknown_classes(classes)
        categories = {by_name[name]['id']: by_name[name] for name in classes}
        return categories, {
            label: by_name[name]['id']
            for label, name in enumerate(classes)
        }

    def _check_no_unknown_classes(self, classes: Sequence[str]) -> None:
        """Every category that segments of the file use must be a class:
        the segments of another would be left out of PQ unnoticed."""
        unknown = [
            category for category_id, category in self.json_categories.items()
            if self.segment_counts.get(category_id) and (
                category['name'] not in classes)
        ]
        if not unknown:
            return
        described = ', '.join(f'{c["id"]} "{c["name"]}" '
                              f'({"thing" if c.get("isthing") else "stuff"}, '
                              f'{self.segment_counts[c["id"]]} segments)'
                              for c in unknown)
        raise ValueError(
            f'{self.ann_file}: categories {described} are not classes of the '
            f'dataset ({list(classes)}). Add each stuff category to the '
            "config's metainfo stuff_classes (and classes) and set the "
            "model's num_stuff_classes to len(stuff_classes); add each "
            'thing category to thing_classes (and classes) and to the '
            "instance heads' num_classes. Or remove its segments from the "
            'file (set their pixels to 0, VOID).')

    def ground_truth(self,
                     data_sample: dict) -> Tuple[np.ndarray, List[dict], str]:
        """(H, W) segment ids, ``segments_info`` and PNG path of one image."""
        if self.gt_annotations is not None:
            image_id = data_sample['img_id']
            if image_id not in self.gt_annotations:
                raise KeyError(f'{self.ann_file}: no annotation of image id '
                               f'{image_id} ({data_sample.get("img_path")}).')
            annotation = self.gt_annotations[image_id]
            path = osp.join(self.seg_prefix, annotation['file_name'])
            segments = annotation['segments_info']
        else:
            missing = [
                k for k in ('segments_info', 'seg_map_path')
                if k not in data_sample
            ]
            if missing:
                raise KeyError(
                    f'CocoPanopticQualityMetric without ann_file reads the '
                    f'ground truth from the data samples, which lack '
                    f'{missing}: add them to PackDetInputs meta_keys, or give '
                    'ann_file and seg_prefix.')
            path = data_sample['seg_map_path']
            classes = self.dataset_meta['classes']
            thing_classes = set(self.dataset_meta['thing_classes'])
            segments = [
                dict(
                    id=s['id'],
                    category_id=s['category'],
                    iscrowd=int(classes[s['category']] in thing_classes
                                and not s['is_thing']))
                for s in data_sample['segments_info']
            ]
        try:
            png = get(path, backend_args=self.backend_args)
        except FileNotFoundError:
            raise FileNotFoundError(
                f'Panoptic PNG {path} of image {data_sample.get("img_path")} '
                'does not exist; check seg_prefix / data_prefix.seg.'
            ) from None
        ids = rgb2id(mmcv.imfrombytes(png, flag='color', channel_order='rgb'))
        return ids, segments, path

    def predicted_segments(
            self, data_sample: dict,
            label2cat: Dict[int, int]) -> Tuple[np.ndarray, List[dict]]:
        """Segment ids (1..K, 0 = VOID) and ``segments_info`` of one
        prediction, from ``pred_panoptic_seg.sem_seg`` (values ``label +
        instance * INSTANCE_OFFSET``; ``num_classes`` or ``ignore_index`` is
        VOID)."""
        pred = data_sample['pred_panoptic_seg']
        panoptic = pred['sem_seg'].cpu().numpy()[0]
        num_classes = len(self.dataset_meta['classes'])
        void_labels = {num_classes, pred.get('ignore_index', num_classes)}
        values, inverse = np.unique(panoptic, return_inverse=True)
        segments, new_ids = [], np.zeros(len(values), np.int64)
        for index, value in enumerate(values):
            label = int(value) % INSTANCE_OFFSET
            if label in void_labels:
                continue
            if label not in label2cat:
                raise ValueError(
                    f'{data_sample.get("img_path")}: the model predicts label '
                    f'{label}, but the dataset has {num_classes} classes; '
                    'make num_classes + num_stuff_classes of the model the '
                    "dataset's things + stuff.")
            new_ids[index] = len(segments) + 1
            segments.append(
                dict(id=len(segments) + 1, category_id=label2cat[label]))
        return new_ids[inverse.reshape(panoptic.shape)], segments

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Score each image; keep its :class:`PQStat` in ``self.results``."""
        _, label2cat = self.categories()
        for data_sample in data_samples:
            gt_ids, gt_segments, path = self.ground_truth(data_sample)
            pred_ids, pred_segments = self.predicted_segments(
                data_sample, label2cat)
            self.results.append(
                pq_stat_single_image(
                    gt_ids, gt_segments, pred_ids, pred_segments, image=path))

    def compute_metrics(self, results: List[PQStat]) -> Dict[str, float]:
        """PQ / SQ / RQ of all, thing and stuff classes, in percent."""
        logger = MMLogger.get_current_instance()
        categories, _ = self.categories()
        total = PQStat()
        for stat in results:
            total += stat
        pq_results = {
            name: total.pq_average(categories, isthing=isthing)[0]
            for name, isthing in SPLITS
        }
        per_class = {
            categories[c]['name']: quality
            for c, quality in total.pq_average(categories, None)[1].items()
        }
        coco_panoptic_metric.print_panoptic_table(
            pq_results, per_class if self.classwise else None, logger=logger)
        return coco_panoptic_metric.parse_pq_results(pq_results)
