"""coco_json: the detections above the threshold, best first, as a COCO
file that pycocotools opens (boxes xywh, RLE masks, category ids)."""
import json

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData
from pycocotools.coco import COCO

from mmcentermask.apis import coco_json

CLASSES = ('circle', 'rectangle', 'triangle')


def sample(with_masks: bool = True) -> DetDataSample:
    """Three detections on a 6 x 8 image; scores 0.2, 0.9, 0.5."""
    masks = torch.zeros(3, 6, 8, dtype=torch.bool)
    masks[0, 0:2, 0:2] = True
    masks[1, 1:4, 2:7] = True  # 15 pixels
    masks[2, 5, 7] = True
    instances = InstanceData(
        bboxes=torch.tensor([[0., 0., 2., 2.], [2., 1., 7., 4.],
                             [7., 5., 8., 6.]]),
        scores=torch.tensor([0.2, 0.9, 0.5]),
        labels=torch.tensor([0, 2, 1]))
    if with_masks:
        instances.masks = masks
        instances.mask_scores = torch.tensor([0.1, 0.8, 0.4])
    return DetDataSample(
        metainfo=dict(ori_shape=(6, 8)), pred_instances=instances)


def test_above_threshold_best_first_in_coco_terms(tmp_path):
    document = coco_json(sample(), CLASSES, 'a.png', score_thr=0.2)
    assert document['images'] == [
        dict(id=1, file_name='a.png', height=6, width=8)
    ]
    assert document['categories'] == [
        dict(id=1, name='circle'),
        dict(id=2, name='rectangle'),
        dict(id=3, name='triangle')
    ]
    # 0.2 is not above 0.2: dropped, as the visualizer does not draw it
    best, second = document['annotations']
    assert best['score'] == pytest.approx(0.9)
    assert best['category_id'] == 3 and second['category_id'] == 2
    assert best['bbox'] == [2.0, 1.0, 5.0, 3.0]  # x, y, width, height
    assert best['area'] == 15 and best['iscrowd'] == 0
    assert best['mask_score'] == pytest.approx(0.8)
    expected = np.zeros((6, 8), np.uint8)
    expected[1:4, 2:7] = 1
    np.testing.assert_array_equal(
        mask_util.decode(best['segmentation']), expected)
    assert [a['id'] for a in document['annotations']] == [1, 2]

    path = tmp_path / 'detections.json'
    path.write_text(json.dumps(document))
    coco = COCO(str(path))
    assert len(coco.getAnnIds(imgIds=[1])) == 2
    assert len(coco.loadRes(document['annotations']).getAnnIds()) == 2


def test_nothing_above_threshold_and_no_masks():
    assert coco_json(sample(), CLASSES, 'a.png', 0.95)['annotations'] == []
    best = coco_json(sample(with_masks=False), CLASSES, 'a.png',
                     0.0)['annotations'][0]
    assert 'segmentation' not in best and 'mask_score' not in best
    assert best['area'] == pytest.approx(15.0)  # the box's
