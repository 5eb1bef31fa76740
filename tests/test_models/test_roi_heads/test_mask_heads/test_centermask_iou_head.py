"""CenterMaskIoUHead: centermask2 area ratio, targets, loss, init,
scores."""
import math

import numpy as np
import pytest
import torch
from detector_utils import make_sampling_result
from mmdet.structures.mask import BitmapMasks, PolygonMasks
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from mmcentermask.models import CenterMaskIoUHead
from mmcentermask.models.roi_heads.mask_heads.centermask_iou_head import (
    mask_iou_targets, polygon_area_ratio)

TRAIN_CFG = ConfigDict(mask_size=28, mask_thr_binary=0.)
SQUARE_10 = np.array([0., 0., 10., 0., 10., 10., 0., 10.])  # area 100


def small_head(**kwargs):
    return CenterMaskIoUHead(
        num_convs=2,
        num_fcs=2,
        in_channels=4,
        conv_out_channels=4,
        fc_out_channels=8,
        num_classes=3,
        **kwargs)


def test_polygon_area_ratio_box_cuts_the_object():
    """A box covering the left half of a 10 x 10 square: ratio 0.5."""
    masks = PolygonMasks([[SQUARE_10]], 20, 20)
    ratios = polygon_area_ratio(
        np.array([[5., 0., 15., 10.], [0., 0., 10., 10.], [0., 0., 20., 20.],
                  [12., 12., 18., 18.]],
                 dtype=np.float32), np.zeros(4, dtype=np.int64), masks)
    np.testing.assert_allclose(ratios, [0.5, 1., 1., 0.])


def test_polygon_area_ratio_truncates_box_size_and_sums_polygons():
    """The in-box grid is int(w) x int(h): box [5, 5, 15.9, 15.7] of a 20 x
    20 square gives a 10 x 10 grid fully inside (100 / 400); a two-part
    instance sums both polygons' areas."""
    square_20 = np.array([0., 0., 20., 0., 20., 20., 0., 20.])
    two_parts = [SQUARE_10, SQUARE_10 + 20.]  # areas 100 + 100
    masks = PolygonMasks([[square_20], two_parts], 40, 40)
    ratios = polygon_area_ratio(
        np.array(
            [[5., 5., 15.9, 15.7], [0., 0., 10., 10.], [0., 0., 40., 40.]],
            dtype=np.float32), np.array([0, 1, 1]), masks)
    np.testing.assert_allclose(ratios, [0.25, 0.5, 1.])


def test_polygon_area_ratio_zero_area_instance():
    flat = np.array([0., 0., 10., 0., 20., 0.])
    ratios = polygon_area_ratio(
        np.array([[0., 0., 10., 10.]], np.float32), np.array([0]),
        PolygonMasks([[flat]], 20, 20))
    np.testing.assert_array_equal(ratios, [0.])


def test_mask_iou_targets_formula():
    """Predicted: left 7 of 28 columns of the RoI; target: left 14; the RoI
    holds half the object: I = 196, full = 392 / 0.5, U = 196 + 784 - 196,
    IoU = 0.25 (= 25 px^2 predicted inside a 100 px^2 object)."""
    preds = torch.full((3, 28, 28), -1.)
    preds[:, :, :7] = 1.
    preds[2] = -1.  # empty prediction: IoU 0
    targets = torch.zeros(3, 28, 28)
    targets[:, :, :14] = 1.
    ratios = torch.tensor([0.5, 1., 0.5])
    iou = mask_iou_targets(preds, targets, ratios)
    assert iou.dtype == torch.float64
    torch.testing.assert_close(
        iou, torch.tensor([0.25, 0.5, 0.], dtype=torch.float64))
    # ratio floored at 1e-10 and union at 1
    iou = mask_iou_targets(
        torch.ones(1, 28, 28), torch.ones(1, 28, 28), torch.tensor([0.]))
    assert 0 < iou.item() < 1e-6
    iou = mask_iou_targets(-torch.ones(1, 28, 28), torch.zeros(1, 28, 28),
                           torch.tensor([1.]))
    assert iou.item() == 0.


@pytest.mark.parametrize(
    'masks', [
        PolygonMasks([[SQUARE_10]], 20, 20),
        BitmapMasks(
            np.pad(np.ones((1, 10, 10)), ((0, 0), (0, 10), (0, 10))), 20, 20)
    ],
    ids=['polygon', 'bitmap'])
def test_get_targets_end_to_end(masks):
    """RoI [5, 0, 15, 10] on the 10 x 10 square (target: left 14 columns),
    prediction = left 7 columns: target IoU 0.25, for polygon GT
    (centermask2 ratio) and bitmap GT (mmdet's crop ratio)."""
    res = make_sampling_result([5., 0., 15., 10.], [0., 0., 10., 10.], [0],
                               [2])
    gt = InstanceData(masks=masks)
    mask_targets = torch.zeros(1, 28, 28)
    mask_targets[:, :, :14] = 1.
    preds = torch.full((1, 28, 28), -1.)
    preds[:, :, :7] = 1.
    targets = small_head().get_targets([res], [gt], preds, mask_targets,
                                       TRAIN_CFG)
    assert targets.dtype == torch.float32
    torch.testing.assert_close(targets, torch.tensor([0.25]))


def test_loss_on_positive_targets_only():
    """0.5 * mean squared error over the RoIs whose target is > 0."""
    head = small_head()
    gt = InstanceData(masks=PolygonMasks([[SQUARE_10]], 20, 20))
    res = make_sampling_result([[5., 0., 15., 10.], [0., 0., 10., 10.]],
                               [0., 0., 10., 10.], [0, 0], [2])
    mask_targets = torch.zeros(2, 28, 28)
    mask_targets[0, :, :14] = 1.
    mask_targets[1] = 1.
    preds = torch.full((2, 28, 28), -1.)
    preds[0, :, :7] = 1.  # IoU 0.25; RoI 1 predicts nothing: IoU 0
    iou_pred = torch.tensor([0.75, 0.4], requires_grad=True)
    loss = head.loss_and_target(iou_pred, preds, mask_targets, [res], [gt],
                                TRAIN_CFG)['loss_mask_iou']
    assert loss.item() == pytest.approx(0.5 * 0.5**2)
    loss.backward()
    assert iou_pred.grad.tolist() == pytest.approx([0.5, 0.])


def test_loss_without_positives_is_connected_zero():
    head = small_head()
    res = make_sampling_result(np.zeros((0, 4)), [0., 0., 10., 10.], [], [2])
    gt = InstanceData(masks=PolygonMasks([[SQUARE_10]], 20, 20))
    iou_pred = head(torch.zeros(0, 4, 14, 14), torch.zeros(0, 28, 28))
    loss = head.loss_and_target(iou_pred[:, 0], torch.zeros(0, 28, 28),
                                torch.zeros(0, 28, 28), [res], [gt],
                                TRAIN_CFG)['loss_mask_iou']
    assert loss.item() == 0 and loss.requires_grad
    loss.backward()
    assert head.fc_mask_iou.weight.grad is not None


def test_c2_init_and_layout():
    torch.manual_seed(0)
    head = CenterMaskIoUHead(
        num_convs=4, in_channels=256, conv_out_channels=256, num_classes=80)
    head.init_weights()
    assert [c.stride for c in head.convs] == [(1, 1)] * 3 + [(2, 2)]
    assert head.convs[0].in_channels == 257
    assert head.fcs[0].in_features == 256 * 7 * 7
    for conv in head.convs:
        assert conv.weight.std().item() == pytest.approx(
            math.sqrt(2 / (256 * 9)), rel=0.05)
    for fc in head.fcs:  # kaiming fan_out = out_features
        assert fc.weight.std().item() == pytest.approx(
            math.sqrt(2 / 1024), rel=0.05)
    assert head.fc_mask_iou.weight.std().item() == pytest.approx(
        0.01, rel=0.05)
    for layer in [*head.convs, *head.fcs, head.fc_mask_iou]:
        assert layer.bias.abs().sum() == 0


def test_predict_by_feat_adds_mask_scores_and_keeps_scores():
    head = small_head()
    results = InstanceData(
        scores=torch.tensor([0.9, 0.5]), labels=torch.tensor([2, 0]))
    iou = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 1.2]])
    out = head.predict_by_feat((iou, ), [results])[0]
    torch.testing.assert_close(out.scores, torch.tensor([0.9, 0.5]))
    torch.testing.assert_close(out.mask_scores, torch.tensor([0.27, 0.2]))
