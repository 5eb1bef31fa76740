"""``CocoDataset`` that checks its annotations instead of dropping them.

MMDetection's :class:`~mmdet.datasets.CocoDataset` (with pycocotools
underneath) accepts several mistakes without a word.
:class:`CheckedCocoDataset` subclasses it and, while it
loads the annotation file (once, before training; linear in the number of
annotations):

* **a bad JSON file** raises ``ValueError`` naming the file, line and column
  (instead of a bare ``JSONDecodeError``);
* **class names in ``metainfo.classes`` that the file does not have** raise
  ``ValueError`` listing them with the closest names of the file (a misspelt
  name otherwise drops that class and shifts the labels of the others);
* **annotations with a ``category_id`` the file does not declare** are counted
  and reported (``unknown_categories='warn'``, default) or stop loading
  (``'error'``); annotations of declared categories outside ``classes`` are
  counted and reported too;
* **boxes with NaN or infinite coordinates** drop their annotation;
  **polygons** with non-finite coordinates, fewer than 3 points or an odd
  number of values are dropped, and an annotation left without any polygon is
  dropped (a NaN polygon otherwise makes the mask-target rasterisation allocate
  gigabytes); all counted in one warning;
* **RLE masks of non-crowd annotations** are converted to polygons (the outer
  and inner contours of the decoded bitmap) when the pipeline loads masks with
  ``LoadAnnotations(poly2mask=False)``, which otherwise ignores every RLE
  instance;
* **images whose every annotation is invalid** are counted in the warning;
* **a training set with no usable image** stops with one line saying why;
* **an image file that cannot be decoded** (empty, truncated, not an image),
  met when a sample is loaded, raises ``ValueError`` naming the file and the
  reason (MMCV alone gives an unnamed ``cv2.error`` for an empty file).
"""
import difflib
import json
from collections import Counter
from typing import List, Sequence

import cv2
import numpy as np
from mmdet.datasets import CocoDataset
from mmdet.datasets.api_wrappers import COCO
from mmdet.datasets.transforms import LoadAnnotations
from mmdet.registry import DATASETS
from mmengine.logging import print_log
from pycocotools import mask as mask_utils

from mmcentermask.utils.image_check import unreadable_reason


class CheckedCOCO(COCO):
    """pycocotools' COCO naming its file on bad JSON and unknown classes."""

    def __init__(self, annotation_file=None):
        self.annotation_file = annotation_file
        try:
            super().__init__(annotation_file=annotation_file)
        except json.JSONDecodeError as error:
            raise ValueError(
                f'Annotation file {annotation_file} is not valid JSON: '
                f'{error.msg} at line {error.lineno}, column {error.colno}. '
                'Fix or regenerate the file (COCO format: a JSON object with '
                'images, annotations and '
                'categories).') from error

    def get_cat_ids(self, cat_names=[], sup_names=[], cat_ids=[]):
        if cat_names:
            known = [cat['name'] for cat in self.dataset.get('categories', [])]
            missing = [name for name in cat_names if name not in known]
            if missing:
                hints = []
                for name in missing:
                    close = difflib.get_close_matches(
                        name, known, n=3, cutoff=0.6)
                    hints.append(f'{name!r}' + (
                        f' (did you mean {", ".join(map(repr, close))}?)'
                        if close else ''))
                raise ValueError(
                    f'metainfo.classes names {len(missing)} class(es) that '
                    f'annotation file {self.annotation_file} does not have: '
                    f'{"; ".join(hints)}. Its categories are: '
                    f'{", ".join(map(repr, known))}. Fix the names in the '
                    'config (metainfo=dict(classes=...)); a name that is not '
                    'in the file would drop that class and shift the labels '
                    'of the others.')
        return super().get_cat_ids(cat_names, sup_names, cat_ids)


def _rle_to_polygons(rle: dict) -> List[List[float]]:
    """Outer and hole contours of an RLE mask as COCO polygons."""
    if isinstance(rle.get('counts'), list):
        rle = mask_utils.frPyObjects(rle, *rle['size'])
    bitmap = np.ascontiguousarray(mask_utils.decode(rle).astype(np.uint8))
    contours, _ = cv2.findContours(bitmap, cv2.RETR_CCOMP,
                                   cv2.CHAIN_APPROX_NONE)
    return [
        c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3
    ]


@DATASETS.register_module()
class CheckedCocoDataset(CocoDataset):
    """:class:`~mmdet.datasets.CocoDataset` with the checks listed above.

    Takes every argument of ``CocoDataset``, plus:

    Args:
        unknown_categories (str): ``'warn'`` (default) counts annotations whose
            ``category_id`` the file does not declare and reports them;
            ``'error'`` raises instead.
        rle_to_polygons (bool, optional): Convert non-crowd RLE masks to
        polygons.
            ``None`` (default): when the pipeline has ``LoadAnnotations`` with
            ``with_mask=True, poly2mask=False``.
    """
    COCOAPI = CheckedCOCO

    def __init__(self,
                 *args,
                 unknown_categories: str = 'warn',
                 rle_to_polygons=None,
                 **kwargs) -> None:
        if unknown_categories not in ('warn', 'error'):
            raise ValueError(f"unknown_categories must be 'warn' or 'error', "
                             f'got {unknown_categories!r}')
        self.unknown_categories = unknown_categories
        self._rle_to_polygons = rle_to_polygons
        super().__init__(*args, **kwargs)

    def _converts_rle(self) -> bool:
        if self._rle_to_polygons is not None:
            return self._rle_to_polygons
        transforms: Sequence = getattr(self.pipeline, 'transforms', [])
        return any(
            isinstance(t, LoadAnnotations) and t.with_mask and not t.poly2mask
            for t in transforms)

    def load_data_list(self) -> List[dict]:
        self.stats = Counter()
        self._convert_rle = self._converts_rle()
        self._file_cat_ids = None
        data_list = super().load_data_list()
        self._report()
        return data_list

    def parse_data_info(self, raw_data_info: dict):
        if self._file_cat_ids is None:  # self.coco exists while data is parsed
            self._file_cat_ids = set(self.coco.getCatIds())
            self._file_cat_names = {
                c['id']: c['name']
                for c in self.coco.dataset['categories']
            }
        anns, stats = [], self.stats
        for ann in raw_data_info['raw_ann_info']:
            if ann.get('ignore', False):
                anns.append(ann)
                continue
            cat = ann.get('category_id')
            if cat not in self._file_cat_ids:
                stats['unknown category'] += 1
                stats[f'unknown id {cat}'] += 1
                if self.unknown_categories == 'error':
                    raise ValueError(
                        f'Annotation {ann.get("id")} of image '
                        f'{ann.get("image_id")} in {self.ann_file} has '
                        f'category_id {cat!r}, which the file\'s categories '
                        f'do not declare ({sorted(self._file_cat_ids)}).')
                continue
            if cat not in self.cat_ids:
                stats['category not in classes'] += 1
                continue
            if not np.isfinite(np.asarray(ann.get('bbox', []),
                                          dtype=float)).all():
                stats['non-finite box'] += 1
                continue
            seg = ann.get('segmentation')
            if isinstance(
                    seg,
                    dict) and not ann.get('iscrowd', 0) and self._convert_rle:
                ann = dict(ann, segmentation=_rle_to_polygons(seg))
                stats['RLE converted'] += 1
                seg = ann['segmentation']
                if not seg:
                    stats['no polygon left'] += 1
                    continue
            elif isinstance(seg, list) and seg:
                kept = []
                for poly in seg:
                    values = np.asarray(poly, dtype=float).reshape(-1)
                    if not np.isfinite(values).all():
                        stats['non-finite polygon'] += 1
                    elif len(values) < 6 or len(values) % 2:
                        stats['polygon with < 3 points'] += 1
                    else:
                        kept.append(poly)
                if not kept:
                    stats['no polygon left'] += 1
                    continue
                if len(kept) != len(seg):
                    ann = dict(ann, segmentation=kept)
            anns.append(ann)
        info = super().parse_data_info(dict(raw_data_info, raw_ann_info=anns))
        if raw_data_info['raw_ann_info'] and not info['instances']:
            stats['images with no valid annotation'] += 1
        return info

    def _report(self) -> None:
        stats = self.stats
        parts = []
        if stats['unknown category']:
            ids = sorted(k[len('unknown id '):] for k in stats
                         if k.startswith('unknown id '))
            parts.append(
                f"{stats['unknown category']} annotations with a category_id "
                f"the file does not declare (ids {', '.join(ids)}) were "
                "dropped")
        if stats['category not in classes']:
            parts.append(f"{stats['category not in classes']} annotations of "
                         "categories "
                         'not in metainfo.classes were not used')
        for key, text in (('non-finite box',
                           'annotations with a NaN/infinite box'),
                          ('non-finite polygon',
                           'polygons with NaN/infinite coordinates'),
                          ('polygon with < 3 points',
                           'polygons with fewer than 3 points'),
                          ('no polygon left',
                           'annotations left without a valid polygon')):
            if stats[key]:
                parts.append(f'{stats[key]} {text} were dropped')
        if stats['RLE converted']:
            parts.append(
                f"{stats['RLE converted']} RLE masks were converted to "
                "polygons "
                '(LoadAnnotations(poly2mask=False) would ignore them)')
        if stats['images with no valid annotation']:
            parts.append(
                f"{stats['images with no valid annotation']} images have "
                'annotations but none valid (empty boxes, unknown categories '
                'or invalid masks)')
        if parts:
            print_log(
                f'{type(self).__name__} {self.ann_file}: ' + '; '.join(parts) +
                '.',
                logger='current',
                level=30)

    def filter_data(self) -> List[dict]:
        data_list = super().filter_data()
        if not data_list and not self.test_mode:
            raise ValueError(
                f'No training image left in {self.ann_file}: '
                f'{len(self.data_list)} images read, none with a usable '
                f'annotation after filter_cfg={self.filter_cfg} (classes '
                f'{tuple(self.metainfo["classes"])}). Check that the file has '
                'annotations of these classes with boxes of at least 1x1 px, '
                'and that filter_cfg.min_size is not larger than the images.')
        return data_list

    def prepare_data(self, idx):
        try:
            return super().prepare_data(idx)
        except Exception as error:
            path = self.get_data_info(idx).get('img_path')
            reason = unreadable_reason(path) if isinstance(path, str) else None
            if reason is None:
                raise
            raise ValueError(
                f'Image {path} (in {self.ann_file}) cannot be read: {reason}. '
                'Replace the file or remove the image from the '
                'annotation file.') from error
