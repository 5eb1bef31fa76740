"""CenterMaskFCOSPointHead: shapes, FCOS positives matched to their GT,
losses (empty GT included), and masks built from each detection's own
location."""
import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures.mask import BitmapMasks
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

import mmcentermask  # noqa: F401  (registration)

NUM_CLASSES = 3
SHAPE_SIZE = 4
STRIDES = (8, 16, 32, 64, 128)
TEST_CFG = dict(
    nms_pre=1000,
    score_thr=0.05,
    nms=dict(type='nms', iou_threshold=0.6),
    max_per_img=10,
    mask_thr_binary=0.5)


def build_head(**kwargs):
    cfg = dict(
        type='CenterMaskFCOSPointHead',
        num_classes=NUM_CLASSES,
        in_channels=8,
        feat_channels=8,
        stacked_convs=1,
        norm_cfg=dict(type='GN', num_groups=4),
        shape_size=SHAPE_SIZE,
        mask_channels=8,
        test_cfg=ConfigDict(TEST_CFG))
    cfg.update(kwargs)
    torch.manual_seed(0)
    head = MODELS.build(cfg)
    head.init_weights()
    return head


def features(size=128, batch=1):
    return [
        torch.rand(batch, 8, size // s, size // s) for s in STRIDES
    ]


def gt_instances(boxes, labels, size=128):
    masks = np.zeros((len(boxes), size, size), np.uint8)
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        masks[k, y1:y2, x1:x2] = 1
    return InstanceData(
        bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.tensor(labels, dtype=torch.long),
        masks=BitmapMasks(masks, size, size))


METAS = [dict(batch_input_shape=(128, 128), img_shape=(128, 128),
              ori_shape=(128, 128), scale_factor=(1., 1.))]
TWO_OBJECTS = gt_instances([[4, 4, 60, 52], [72, 60, 124, 124]], [0, 2])


def test_output_shapes():
    head = build_head(saliency_type='class_agnostic')
    outs = head(features())
    assert len(outs) == 5
    shapes = [tuple(level.shape) for level in outs[3]]
    assert shapes == [(1, 16, 16, 16), (1, 16, 8, 8), (1, 16, 4, 4),
                      (1, 16, 2, 2), (1, 16, 1, 1)]
    assert [tuple(s.shape) for s in outs[4]] == [(1, 1, 16, 16)]


def test_saliency_on_p2():
    """``num_saliency_only_levels=1``: P2 feeds the saliency only; FCOS and
    the shapes stay on P3-P7, the masks are assembled on the P2 canvas and
    trained from it."""
    head = build_head(num_saliency_only_levels=1)
    p2 = torch.rand(1, 8, 32, 32)
    outs = head([p2] + features())
    assert [tuple(c.shape[-2:]) for c in outs[0]] == [(16, 16), (8, 8),
                                                      (4, 4), (2, 2), (1, 1)]
    assert len(outs[3]) == 5
    assert [tuple(s.shape) for s in outs[4]] == [(1, NUM_CLASSES, 32, 32)]
    head.train()
    losses = head.loss_by_feat(*outs, [TWO_OBJECTS], METAS)
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    head.eval()
    head.test_cfg['score_thr'] = 0.
    with torch.no_grad():
        results = head.predict_by_feat(
            *head([p2] + features()), batch_img_metas=METAS, rescale=True)
    assert results[0].masks.shape[1:] == (128, 128)


def test_level_count_must_match_the_neck():
    with pytest.raises(ValueError, match='num_saliency_only_levels'):
        build_head(num_saliency_only_levels=2)
    head = build_head(num_saliency_only_levels=1)
    with pytest.raises(ValueError, match=r'got 5 FPN levels, expected 6'):
        head(features())


def test_bad_saliency_type_raises():
    with pytest.raises(ValueError, match="saliency_type='both'"):
        build_head(saliency_type='both')


def test_positives_are_matched_to_the_gt_containing_them():
    head = build_head()
    head.train()
    cls_scores, bbox_preds, _, shape_preds, _ = head(features())
    image_ids, shapes, gt_ids = head._positive_shapes(cls_scores, bbox_preds,
                                                      shape_preds,
                                                      [TWO_OBJECTS])
    assert len(gt_ids) > 0 and shapes.shape == (len(gt_ids), 4, 4)
    assert set(gt_ids.tolist()) == {0, 1}
    assert (image_ids == 0).all()
    # Recompute each positive's location: it lies inside its GT box.
    sizes = [s.shape[-2:] for s in cls_scores]
    points = head.prior_generator.grid_priors(sizes, device='cpu')
    labels, _ = head.get_targets(points, [TWO_OBJECTS])
    positive_points = torch.cat([
        p[(lab >= 0) & (lab < NUM_CLASSES)] for p, lab in zip(points, labels)
    ])
    positive_labels = torch.cat([
        lab[(lab >= 0) & (lab < NUM_CLASSES)] for lab in labels
    ])
    boxes = TWO_OBJECTS.bboxes[gt_ids]
    assert ((positive_points >= boxes[:, :2]) &
            (positive_points <= boxes[:, 2:])).all()
    assert torch.equal(TWO_OBJECTS.labels[gt_ids], positive_labels)


def test_losses_and_empty_gt():
    head = build_head()
    head.train()
    outs = head(features())
    losses = head.loss_by_feat(*outs, [TWO_OBJECTS], METAS)
    assert set(losses) == {
        'loss_cls', 'loss_bbox', 'loss_centerness', 'loss_mask',
        'loss_saliency'
    }
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    assert head.shape_head[0].weight.grad.abs().sum() > 0
    outs = head(features())
    empty = head.loss_by_feat(*outs, [gt_instances([], [])], METAS)
    assert empty['loss_mask'].item() == 0 and empty['loss_bbox'].item() == 0
    sum(empty.values()).backward()


def test_each_detection_takes_the_shape_of_its_own_location():
    """One confident location on P3 (cell (3, 5)) whose shape logits are
    +10 while all others are -10: its detection has a full mask, every
    other detection an empty one."""
    head = build_head(test_cfg=ConfigDict(TEST_CFG, score_thr=0.0))
    head.eval()
    outs = list(head(features()))
    cls_scores, bbox_preds, centernesses, shape_preds, saliency = outs
    for level in range(5):
        cls_scores[level].fill_(-8.)
        bbox_preds[level].fill_(4.)
        shape_preds[level].fill_(-10.)
    cls_scores[0][0, 1, 3, 5] = 8.
    bbox_preds[0][0, :, 3, 5] = torch.tensor([12., 10., 8., 14.])
    shape_preds[0][0, :, 3, 5] = 10.
    saliency[0].fill_(10.)
    result = head.predict_by_feat(
        cls_scores, bbox_preds, centernesses, shape_preds, saliency,
        batch_img_metas=METAS, rescale=True)[0]
    assert 'locations' not in result
    assert result.masks.dtype == torch.bool
    assert result.masks.shape == (len(result), 128, 128)
    assert result.labels[0] == 1
    # P3 location (3, 5) is at pixel (5 * 8 + 4, 3 * 8 + 4) = (44, 28).
    assert result.bboxes[0].tolist() == [32., 18., 52., 42.]
    # On the stride-8 canvas the box covers cells x 4-5, y 2-4 (pixel
    # centres inside [4, 6.5) x [2.25, 5.25)), i.e. pixels x 32-47, y 16-39.
    mask = result.masks[0]
    assert mask[18:38, 34:46].all()
    assert not mask[:14].any() and not mask[42:].any()
    assert not mask[:, :30].any() and not mask[:, 50:].any()
    assert not result.masks[1:].any()
