"""CocoPanopticQualityMetric on the panoptic shapes set: the ground truth
predicted back gives PQ 100; a missed thing and a VOID-mapped prediction
give known numbers, from the JSON or from the data samples alike."""
import json

import cv2
import numpy as np
import pytest
import torch
from mmdet.evaluation.functional import INSTANCE_OFFSET

from mmcentermask.datasets import CLASSES, STUFF_CLASSES
from mmcentermask.evaluation import CocoPanopticQualityMetric
from mmcentermask.evaluation.functional import rgb2id

META = dict(
    classes=CLASSES + STUFF_CLASSES,
    thing_classes=CLASSES,
    stuff_classes=STUFF_CLASSES)
NUM_CLASSES = len(META['classes'])


def samples(root, drop_thing=False):
    """Data samples (as the evaluator passes them: dicts) whose prediction is
    the ground truth in MMDetection's format (label + instance *
    INSTANCE_OFFSET; VOID = num_classes)."""
    coco = json.loads((root / 'annotations/panoptic_val.json').read_text())
    result = []
    for image, ann in zip(coco['images'], coco['annotations']):
        png = root / 'annotations/panoptic_val' / ann['file_name']
        ids = rgb2id(cv2.imread(str(png))[..., ::-1])
        pan = np.full(ids.shape, NUM_CLASSES, np.int64)
        segments_info = []
        for index, segment in enumerate(ann['segments_info']):
            label = segment['category_id'] - 1  # category ids 1..6
            thing = label < len(CLASSES)
            pan[ids == segment['id']] = label + thing * (index + 1) * \
                INSTANCE_OFFSET
            segments_info.append(
                dict(id=segment['id'], category=label, is_thing=thing))
        result.append(
            dict(
                img_id=image['id'],
                img_path=str(root / 'val' / image['file_name']),
                ori_shape=ids.shape,
                seg_map_path=str(png),
                segments_info=segments_info,
                pred_panoptic_seg=dict(sem_seg=torch.from_numpy(pan)[None])))
    if drop_thing:  # the first thing of the first image becomes VOID
        pan = result[0]['pred_panoptic_seg']['sem_seg']
        first = pan[pan >= INSTANCE_OFFSET].min()
        pan[pan == first] = NUM_CLASSES
    return result


def evaluate(metric, data_samples):
    metric.dataset_meta = META
    metric.process({}, data_samples)
    return metric.evaluate(len(data_samples))


def from_json(root, **kwargs):
    return CocoPanopticQualityMetric(
        ann_file=str(root / 'annotations/panoptic_val.json'),
        seg_prefix=str(root / 'annotations/panoptic_val'),
        **kwargs)


def test_ground_truth_scores_100(panoptic_val_root):
    result = evaluate(
        from_json(panoptic_val_root, classwise=True),
        samples(panoptic_val_root))
    assert set(result) == {
        f'coco_panoptic/{k}{s}'
        for k in ('PQ', 'SQ', 'RQ')
        for s in ('', '_th', '_st')
    }
    assert all(v == pytest.approx(100.0) for v in result.values())


def test_missed_thing(panoptic_val_root):
    data = samples(panoptic_val_root)
    first = data[0]['pred_panoptic_seg']['sem_seg']
    dropped = int(first[first >= INSTANCE_OFFSET].min()) % INSTANCE_OFFSET
    counts = {}  # ground-truth segments per thing label
    for sample in data:
        for segment in sample['segments_info']:
            if segment['is_thing']:
                counts[segment['category']] = counts.get(
                    segment['category'], 0) + 1
    # The dropped class: tp = n - 1, fn = 1 -> RQ = (n - 1) / (n - 0.5);
    # the other thing classes and the 3 stuff classes stay at 1.
    tp = counts[dropped] - 1
    rq = [tp / (tp + 0.5) if label == dropped else 1.0 for label in counts]
    for metric in (from_json(panoptic_val_root), CocoPanopticQualityMetric()):
        result = evaluate(metric, samples(panoptic_val_root, drop_thing=True))
        assert result['coco_panoptic/SQ_th'] == pytest.approx(100.0)
        assert result['coco_panoptic/PQ_st'] == pytest.approx(100.0)
        assert result['coco_panoptic/PQ_th'] == pytest.approx(100 * sum(rq) /
                                                              len(rq))
        assert result['coco_panoptic/PQ'] == pytest.approx(
            100 * (sum(rq) + 3) / (len(rq) + 3))


def test_bad_inputs_are_named(panoptic_val_root, tmp_path):
    with pytest.raises(ValueError, match='seg_prefix'):
        CocoPanopticQualityMetric(ann_file=str(panoptic_val_root / 'x.json'))
    data = samples(panoptic_val_root)
    for sample in data:
        del sample['segments_info']
    with pytest.raises(KeyError, match='meta_keys'):
        evaluate(CocoPanopticQualityMetric(), data)
    metric = CocoPanopticQualityMetric(
        ann_file=str(panoptic_val_root / 'annotations/panoptic_val.json'),
        seg_prefix=str(tmp_path))
    with pytest.raises(FileNotFoundError, match='seg_prefix'):
        evaluate(metric, samples(panoptic_val_root))
    metric = from_json(panoptic_val_root)
    with pytest.raises(KeyError, match='metainfo classes'):
        metric.dataset_meta = dict(META, classes=('disc', ) + META['classes'])
        metric.process({}, samples(panoptic_val_root))
    data = samples(panoptic_val_root)
    data[0]['pred_panoptic_seg']['sem_seg'][0, 0, 0] = NUM_CLASSES + 1
    with pytest.raises(ValueError, match='predicts label 7'):
        evaluate(from_json(panoptic_val_root), data)
