"""CenterMaskPointHead: shapes, targets on overlapping objects, the mask
loss reduction, levels, prediction (un-padding, rescaling, empty cases) and
one-pixel objects."""
import math

import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures.mask import BitmapMasks
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

import mmcentermask  # noqa: F401  (registration)
from mmcentermask.models.dense_heads import CenterMaskPointHead

NUM_CLASSES = 3
SHAPE_SIZE = 4
TEST_CFG = dict(
    topk=100, local_maximum_kernel=3, score_thr=0.0, mask_thr_binary=0.5)


def build_head(**kwargs) -> CenterMaskPointHead:
    cfg = dict(
        type='CenterMaskPointHead',
        num_classes=NUM_CLASSES,
        in_channels=8,
        feat_channels=8,
        shape_size=SHAPE_SIZE,
        test_cfg=ConfigDict(TEST_CFG))
    cfg.update(kwargs)
    torch.manual_seed(0)
    head = MODELS.build(cfg)
    head.init_weights()
    return head


def rectangle_masks(boxes, size):
    """Bitmap masks filling each integer box on a (size, size) image."""
    masks = np.zeros((len(boxes), size, size), np.uint8)
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        masks[k, int(y1):int(y2), int(x1):int(x2)] = 1
    return BitmapMasks(masks, size, size)


def gt_instances(boxes, labels, size=32):
    return InstanceData(
        bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.tensor(labels, dtype=torch.long),
        masks=rectangle_masks(boxes, size))


# Two overlapping objects of different classes, and a third of class 0.
OVERLAPPING = gt_instances([[2, 4, 18, 20], [10, 8, 30, 28], [20, 0, 28, 6]],
                           [0, 2, 0])
METAS = [dict(batch_input_shape=(32, 32), img_shape=(32, 32),
              ori_shape=(32, 32))]


@pytest.mark.parametrize('saliency_type,saliency_channels',
                         [('class_specific', NUM_CLASSES),
                          ('class_agnostic', 1)])
def test_output_shapes(saliency_type, saliency_channels):
    head = build_head(saliency_type=saliency_type)
    outs = head([torch.rand(2, 8, 8, 10)])
    shapes = [tuple(level[0].shape) for level in outs]
    assert shapes == [(2, NUM_CLASSES, 8, 10), (2, 2, 8, 10), (2, 2, 8, 10),
                      (2, SHAPE_SIZE**2, 8, 10),
                      (2, saliency_channels, 8, 10)]
    assert ((outs[0][0] > 0) & (outs[0][0] < 1)).all()  # sigmoid heatmap


def test_separate_branches_per_level():
    head = build_head(num_feat_levels=2)
    assert len(head.shape_head) == len(head.saliency_head) == 2
    assert head.shape_head[0][0].weight is not head.shape_head[1][0].weight
    feats = [torch.rand(1, 8, 8, 8), torch.rand(1, 8, 8, 8)]
    outs = head(feats)
    assert all(len(branch) == 2 for branch in outs)
    with pytest.raises(ValueError, match='num_feat_levels=1'):
        head(feats[:1])


@pytest.mark.parametrize('kwargs,message', [
    (dict(saliency_type='per_class'), "saliency_type='per_class'"),
    (dict(num_feat_levels=0), 'num_feat_levels=0'),
    (dict(shape_size=0), 'shape_size=0'),
    (dict(min_box_size=0.0), 'min_box_size=0.0'),
])
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_head(**kwargs)


def test_mask_targets_are_cell_coverage_and_saliency_is_union():
    head = build_head()
    targets = head.get_mask_targets([OVERLAPPING], (8, 8), (32, 32))[0]
    assert targets.shape == (3, 8, 8)
    # Box [2, 4, 18, 20]: cell (row 1, col 0) covers x 0-4 (2 px in), y 4-8.
    assert targets[0, 1, 0] == pytest.approx(0.5)
    assert targets[0, 2, 2] == 1 and targets[0, 0, 0] == 0
    # Box [20, 0, 28, 6]: cell (row 1, col 5) covers y 4-8, 2 px of it.
    assert targets[2, 1, 5] == pytest.approx(0.5)
    labels = OVERLAPPING.labels
    saliency = head.saliency_targets(targets, labels,
                                     torch.zeros_like(labels),
                                     torch.Size((1, NUM_CLASSES, 8, 8)))
    assert torch.equal(saliency[0, 0],
                       torch.maximum(targets[0], targets[2]))
    assert torch.equal(saliency[0, 1], torch.zeros(8, 8))
    assert torch.equal(saliency[0, 2], targets[1])
    agnostic = head.saliency_targets(targets, labels,
                                     torch.zeros_like(labels),
                                     torch.Size((1, 1, 8, 8)))
    assert torch.equal(agnostic[0, 0], targets.amax(dim=0))


def test_overlapping_objects_gather_their_own_centre_cells_and_channels():
    head = build_head()
    shape_pred = torch.arange(SHAPE_SIZE**2 * 64.).view(1, SHAPE_SIZE**2, 8,
                                                       8)
    saliency_pred = torch.arange(NUM_CLASSES * 64.).view(1, NUM_CLASSES, 8, 8)
    # Centres (feature px): (2.5, 3.0), (5.0, 4.5), (6.0, 0.75).
    cells_x, cells_y = torch.tensor([2, 5, 6]), torch.tensor([3, 4, 0])
    shapes, saliencies = head.gather_instances(
        shape_pred, saliency_pred, torch.zeros(3, dtype=torch.long),
        OVERLAPPING.labels, cells_x, cells_y)
    for k in range(3):
        assert torch.equal(
            shapes[k].flatten(), shape_pred[0, :, cells_y[k], cells_x[k]])
        assert torch.equal(saliencies[k],
                           saliency_pred[0, OVERLAPPING.labels[k]])


def test_mask_loss_is_per_instance_mean_over_box_pixels():
    """With zero shape and saliency logits every mask is 0.25 in its box;
    the loss is the BCE averaged over each box's pixels, then over the
    instances (A3), and the heatmap peaks sit at the GT centre cells."""
    head = build_head()
    zeros = [torch.zeros(1, SHAPE_SIZE**2, 8, 8)]
    saliency = [torch.zeros(1, NUM_CLASSES, 8, 8)]
    heatmap = [torch.full((1, NUM_CLASSES, 8, 8), 0.1)]
    wh = [torch.zeros(1, 2, 8, 8)]
    losses = head.loss_by_feat(heatmap, wh, wh, zeros, saliency,
                               [OVERLAPPING], METAS)
    targets = head.get_mask_targets([OVERLAPPING], (8, 8), (32, 32))[0]
    expected = []
    for k, (x1, y1, x2, y2) in enumerate((OVERLAPPING.bboxes / 4).tolist()):
        box_targets = targets[k, math.ceil(y1 - .5):math.ceil(y2 - .5),
                              math.ceil(x1 - .5):math.ceil(x2 - .5)]
        bce = -(box_targets * math.log(.25) +
                (1 - box_targets) * math.log(.75))
        expected.append(bce.mean().item())
    assert losses['loss_mask'].item() == pytest.approx(
        np.mean(expected), rel=1e-5)
    assert losses['loss_saliency'].item() == pytest.approx(math.log(2))
    assert set(losses) == {
        'loss_center_heatmap', 'loss_wh', 'loss_offset', 'loss_mask',
        'loss_saliency'
    }
    heatmap_targets, _ = head.get_targets([OVERLAPPING.bboxes],
                                          [OVERLAPPING.labels],
                                          (1, NUM_CLASSES, 8, 8), (32, 32))
    peaks = heatmap_targets['center_heatmap_target'][0].eq(1).nonzero()
    assert peaks.tolist() == [[0, 0, 6], [0, 3, 2], [2, 4, 5]]


def test_losses_average_over_levels():
    head = build_head(num_feat_levels=2)
    outs = head([torch.rand(1, 8, 8, 8), torch.rand(1, 8, 8, 8)])
    both = head.loss_by_feat(*outs, [OVERLAPPING], METAS)
    single = [
        head.loss_by_feat(*[[branch[level]] for branch in outs],
                          [OVERLAPPING], METAS) for level in range(2)
    ]
    for key, value in both.items():
        mean = (single[0][key] + single[1][key]) / 2
        assert value.item() == pytest.approx(mean.item(), rel=1e-6), key
        assert single[0][key].item() != single[1][key].item(), key


def test_empty_gt_gives_zero_mask_loss_and_a_connected_graph():
    head = build_head()
    outs = head([torch.rand(1, 8, 8, 8)])
    empty = gt_instances([], [])
    losses = head.loss_by_feat(*outs, [empty], METAS)
    assert losses['loss_mask'].item() == 0
    assert losses['loss_wh'].item() == 0
    assert losses['loss_center_heatmap'].item() > 0
    assert losses['loss_saliency'].item() > 0
    sum(losses.values()).backward()
    assert head.shape_head[0][0].weight.grad is not None


def test_one_pixel_objects_train_on_one_cell():
    head = build_head(loss_saliency=None)
    tiny = gt_instances([[13, 17, 14, 18], [0, 0, 1, 1]], [1, 1])
    outs = head([torch.rand(1, 8, 8, 8)])
    losses = head.loss_by_feat(*outs, [tiny], METAS)
    assert 'loss_saliency' not in losses
    assert torch.isfinite(losses['loss_mask']) and losses['loss_mask'] > 0
    sum(losses.values()).backward()
    targets = head.get_mask_targets([tiny], (8, 8), (32, 32))[0]
    assert targets.sum(dim=(1, 2)).tolist() == [1 / 16, 1 / 16]


def peak_outputs(size=16, peak=(8, 8), wh=(4., 4.)):
    """Head outputs with one peak (class 1) and masks filling its box."""
    heatmap = torch.zeros(1, NUM_CLASSES, size, size)
    heatmap[0, 1, peak[1], peak[0]] = 0.9
    wh_pred = torch.zeros(1, 2, size, size)
    wh_pred[0, 0], wh_pred[0, 1] = wh
    offset = torch.zeros(1, 2, size, size)
    shape = torch.full((1, SHAPE_SIZE**2, size, size), 10.)
    saliency = torch.full((1, NUM_CLASSES, size, size), 10.)
    return [heatmap], [wh_pred], [offset], [shape], [saliency]


def test_predict_removes_the_test_padding_border():
    """A 48 x 48 image padded to 64 x 64 with 8 px around it (what
    RandomCenterCropPad's test mode records as ``border``)."""
    head = build_head(test_cfg=ConfigDict(TEST_CFG, topk=5))
    meta = dict(
        batch_input_shape=(64, 64),
        img_shape=(64, 64),
        ori_shape=(48, 48),
        border=np.array([8., 56., 8., 56.], np.float32))
    result = head.predict_by_feat(*peak_outputs(), [meta])[0]
    assert len(result) == 5
    assert result.masks.shape == (5, 48, 48)
    assert result.masks.dtype == torch.bool
    assert result.labels[0] == 1 and result.scores[0] == pytest.approx(0.9)
    # Box 16 x 16 px centred at input (32, 32) = image (24, 24).
    assert result.bboxes[0].tolist() == [16., 16., 32., 32.]
    mask = result.masks[0]
    assert mask[17:31, 17:31].all()
    assert not mask[:14].any() and not mask[34:].any()
    assert not mask[:, :14].any() and not mask[:, 34:].any()


def test_predict_rescales_to_the_original_image():
    head = build_head(test_cfg=ConfigDict(TEST_CFG, topk=3))
    meta = dict(
        batch_input_shape=(64, 64),
        img_shape=(64, 48),
        ori_shape=(128, 96),
        scale_factor=(0.5, 0.5))
    result = head.predict_by_feat(*peak_outputs(), [meta])[0]
    assert result.masks.shape == (3, 128, 96)
    assert result.bboxes[0].tolist() == [48., 48., 80., 80.]
    assert result.masks[0, 50:78, 50:78].all()
    assert not result.masks[0, :44].any()


def test_negative_predicted_sizes_give_empty_not_inverted_boxes():
    """Untrained weights can predict negative widths and heights: the boxes
    stay valid (x1 <= x2, y1 <= y2; MMEngine's visualizer asserts it)."""
    head = build_head(test_cfg=ConfigDict(TEST_CFG, topk=3))
    meta = dict(batch_input_shape=(64, 64), img_shape=(64, 64),
                ori_shape=(64, 64))
    result = head.predict_by_feat(*peak_outputs(wh=(-3., 2.)), [meta])[0]
    boxes = result.bboxes
    assert (boxes[:, 2] >= boxes[:, 0]).all()
    assert (boxes[:, 3] >= boxes[:, 1]).all()
    assert boxes[0].tolist() == [32., 28., 32., 36.]


def test_masks_resized_in_chunks_equal_one_resize(monkeypatch):
    """The original-size masks are resized a few at a time (bounded float
    memory) and equal the masks of one resize of them all."""
    from mmcentermask.models.dense_heads import centermask_point_head
    generator = torch.Generator().manual_seed(0)
    masks = torch.rand(7, 20, 30, generator=generator)
    size = (45, 70)
    whole = centermask_point_head.resize_masks(masks, size) >= 0.5
    monkeypatch.setattr(centermask_point_head, 'RESIZE_CHUNK_BYTES',
                        3 * 4 * size[0] * size[1])
    chunked = centermask_point_head.binary_masks_of_size(masks, size, 0.5)
    assert chunked.dtype == torch.bool and torch.equal(chunked, whole)
    assert centermask_point_head.binary_masks_of_size(
        masks[:0], size, 0.5).shape == (0, 45, 70)


def test_no_detections_give_empty_results():
    head = build_head(test_cfg=ConfigDict(TEST_CFG, score_thr=1.0))
    meta = dict(batch_input_shape=(64, 64), img_shape=(60, 64),
                ori_shape=(60, 64))
    result = head.predict_by_feat(*peak_outputs(), [meta])[0]
    assert len(result) == 0
    assert result.bboxes.shape == (0, 4)
    assert result.masks.shape == (0, 60, 64)
    assert result.masks.dtype == torch.bool


def test_predict_uses_the_last_level():
    head = build_head(num_feat_levels=2, test_cfg=ConfigDict(TEST_CFG, topk=1))
    first = peak_outputs(peak=(3, 3))
    last = peak_outputs(peak=(12, 10))
    outs = [a + b for a, b in zip(first, last)]
    meta = dict(batch_input_shape=(64, 64), img_shape=(64, 64),
                ori_shape=(64, 64))
    result = head.predict_by_feat(*outs, [meta])[0]
    assert result.bboxes[0].tolist() == [40., 32., 56., 48.]
