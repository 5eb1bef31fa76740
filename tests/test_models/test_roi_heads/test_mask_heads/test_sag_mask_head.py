"""SAGMaskHead / SpatialAttention: hand-computed SAM, layout, init, targets,
and use inside mmdet's own StandardRoIHead."""
import math

import numpy as np
import pytest
import torch
from mmdet.models.task_modules.assigners import AssignResult
from mmdet.models.task_modules.samplers import SamplingResult
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.mask import PolygonMasks
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from mmcentermask.models import SAGMaskHead, SpatialAttention


def sam_by_hand(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Spatial attention with explicit loops: x (C, H, W), weight (2, 3, 3)."""
    channels, height, width = x.shape
    maps = np.stack([x.mean(0), x.max(0)])  # mean first, max second
    padded = np.pad(maps, ((0, 0), (1, 1), (1, 1)))
    out = np.empty_like(x)
    for i in range(height):
        for j in range(width):
            logit = (padded[:, i:i + 3, j:j + 3] * weight).sum()
            out[:, i, j] = x[:, i, j] / (1 + math.exp(-logit))
    return out


def test_spatial_attention_matches_hand_computation():
    rng = np.random.RandomState(0)
    x = rng.randn(2, 5, 4, 6).astype(np.float32)
    weight = rng.randn(1, 2, 3, 3).astype(np.float32)
    sam = SpatialAttention()
    assert sam.conv.bias is None
    with torch.no_grad():
        sam.conv.weight.copy_(torch.from_numpy(weight))
        out = sam(torch.from_numpy(x)).numpy()
    for n in range(2):
        np.testing.assert_allclose(
            out[n], sam_by_hand(x[n], weight[0]), rtol=1e-5, atol=1e-6)


def test_spatial_attention_channel_order():
    """Input channel 0 of the SAM conv sees the mean map, channel 1 the
    max map (centermask2 ``spatialAtt.conv.weight`` layout)."""
    # two RoIs with 2 channels of 1 x 1: (1, 3) and (5, -1)
    x = torch.tensor([[1., 3.], [5., -1.]]).reshape(2, 2, 1, 1)
    sam = SpatialAttention()
    with torch.no_grad():
        sam.conv.weight.zero_()
        sam.conv.weight[0, 0, 1, 1] = 1.  # mean only
        mean_gate = sam(x) / x
        sam.conv.weight.zero_()
        sam.conv.weight[0, 1, 1, 1] = 1.  # max only
        max_gate = sam(x) / x
    torch.testing.assert_close(mean_gate[:, 0].flatten(),
                               torch.sigmoid(torch.tensor([2., 2.])))
    torch.testing.assert_close(max_gate[:, 0].flatten(),
                               torch.sigmoid(torch.tensor([3., 5.])))


def test_spatial_attention_kernel_size():
    assert SpatialAttention(7).conv.padding == (3, 3)
    with pytest.raises(ValueError, match='kernel_size'):
        SpatialAttention(5)


@pytest.mark.parametrize('num_convs,channels', [(4, 256), (2, 128)])
def test_layout_forward_and_c2_init(num_convs, channels):
    torch.manual_seed(0)
    head = MODELS.build(
        dict(
            type='SAGMaskHead',
            num_convs=num_convs,
            in_channels=channels,
            conv_out_channels=channels,
            num_classes=80))
    head.init_weights()
    assert len(head.convs) == num_convs
    for conv in head.convs:
        assert conv.norm_cfg is None and conv.conv.bias is not None
        assert conv.conv.kernel_size == (3, 3)
        # c2_msra_fill: N(0, 2 / fan_out), fan_out = C_out * 9
        std = math.sqrt(2 / (channels * 9))
        assert conv.conv.weight.std().item() == pytest.approx(std, rel=0.05)
        assert conv.conv.bias.abs().sum() == 0
    deconv = head.upsample
    assert isinstance(deconv, torch.nn.ConvTranspose2d)
    assert deconv.kernel_size == (2, 2) and deconv.stride == (2, 2)
    assert deconv.weight.std().item() == pytest.approx(
        math.sqrt(2 / (channels * 4)), rel=0.05)
    assert head.conv_logits.weight.shape == (80, channels, 1, 1)
    assert head.conv_logits.weight.std().item() == pytest.approx(
        0.001, rel=0.05)
    assert head.conv_logits.bias.abs().sum() == 0
    assert head.spatial_attention.conv.weight.shape == (1, 2, 3, 3)

    logits = head(torch.randn(3, channels, 14, 14))
    assert logits.shape == (3, 80, 28, 28)
    assert head(torch.zeros(0, channels, 14, 14)).shape == (0, 80, 28, 28)


def test_forward_order_convs_sam_deconv_predictor():
    """forward = predictor(relu(deconv(SAM(convs(x)))))."""
    torch.manual_seed(0)
    head = SAGMaskHead(
        num_convs=2, in_channels=6, conv_out_channels=6, num_classes=3)
    head.init_weights()
    x = torch.randn(2, 6, 14, 14)
    with torch.no_grad():
        feat = x
        for conv in head.convs:
            feat = torch.relu(
                torch.nn.functional.conv2d(
                    feat, conv.conv.weight, conv.conv.bias, padding=1))
        feat = torch.from_numpy(
            np.stack([
                sam_by_hand(f, head.spatial_attention.conv.weight[0].numpy())
                for f in feat.numpy()
            ]))
        feat = torch.relu(head.upsample(feat))
        expected = head.conv_logits(feat)
        torch.testing.assert_close(head(x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('channels_last', [False, True])
def test_label_logits_are_the_label_channel_of_forward(channels_last):
    """predict_label_logits = forward()[i, label_i] for NCHW and for
    channels-last RoI features (whose product reads the NHWC view)."""
    torch.manual_seed(0)
    head = SAGMaskHead(
        num_convs=2, in_channels=6, conv_out_channels=8, num_classes=5)
    for param in head.parameters():
        torch.nn.init.normal_(param, std=0.3)
    x = torch.randn(4, 6, 14, 14)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    labels = torch.tensor([3, 0, 4, 3])
    with torch.no_grad():
        assert head.forward_features(x).is_contiguous() != channels_last
        logits = head.predict_label_logits(x, labels)
        expected = head(x)[torch.arange(4), labels]
    assert logits.shape == (4, 28, 28)
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)


def square_polygon_masks():
    """One GT: the square [0, 20] x [0, 20] in a 40 x 40 image."""
    return PolygonMasks([[np.array([0., 0., 20., 0., 20., 20., 0., 20.])]], 40,
                        40)


def sampling_result(boxes):
    boxes = torch.tensor(boxes, dtype=torch.float32)
    gt_boxes = torch.tensor([[0., 0., 20., 20.]])
    num = len(boxes)
    assign = AssignResult(
        1,
        torch.ones(num, dtype=torch.long),
        torch.ones(num),
        labels=torch.zeros(num).long())
    return SamplingResult(
        torch.arange(num),
        torch.zeros(0).long(), boxes, gt_boxes, assign,
        torch.zeros(num).byte())


@pytest.mark.parametrize('clip,expected_cols', [(False, 14), (True, 28)])
def test_targets_of_rois_crossing_the_image_border(clip, expected_cols):
    """The RoI [-20, 0, 20, 20] covers the square with its right half. Not
    clipped (centermask2): target = right 14 columns; clipped (mmdet):
    the RoI becomes [0, 0, 20, 20] and the target is full."""
    head = SAGMaskHead(
        num_convs=0,
        in_channels=4,
        conv_out_channels=4,
        num_classes=1,
        clip_target_boxes=clip)
    res = sampling_result([[-20., 0., 20., 20.]])
    targets = head.get_targets([res],
                               [InstanceData(masks=square_polygon_masks())],
                               ConfigDict(mask_size=28))
    assert targets.shape == (1, 28, 28)
    assert targets.sum().item() == 28 * expected_cols
    assert targets[0, :, 27].all()


def test_targets_without_positives():
    head = SAGMaskHead(
        num_convs=0, in_channels=4, conv_out_channels=4, num_classes=1)
    targets = head.get_targets([sampling_result(np.zeros((0, 4)))],
                               [InstanceData(masks=square_polygon_masks())],
                               ConfigDict(mask_size=28))
    assert targets.shape == (0, 28, 28)


def test_in_stock_standard_roi_head():
    """SAGMaskHead (and AdaptiveLevelRoIExtractor without metas) inside a
    Mask R-CNN-like mmdet StandardRoIHead: loss and predict."""
    torch.manual_seed(0)
    roi_layer = dict(type='RoIAlign', output_size=14, sampling_ratio=0)
    roi_head = MODELS.build(
        dict(
            type='StandardRoIHead',
            bbox_roi_extractor=dict(
                type='SingleRoIExtractor',
                roi_layer=dict(roi_layer, output_size=7),
                out_channels=8,
                featmap_strides=[4, 8, 16, 32]),
            bbox_head=dict(
                type='Shared2FCBBoxHead',
                in_channels=8,
                fc_out_channels=16,
                roi_feat_size=7,
                num_classes=3,
                bbox_coder=dict(
                    type='DeltaXYWHBBoxCoder',
                    target_means=[0., 0., 0., 0.],
                    target_stds=[0.1, 0.1, 0.2, 0.2]),
                loss_cls=dict(type='CrossEntropyLoss', loss_weight=1.0),
                loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
            mask_roi_extractor=dict(
                type='AdaptiveLevelRoIExtractor',
                roi_layer=roi_layer,
                out_channels=8,
                featmap_strides=[4, 8, 16, 32]),
            mask_head=dict(
                type='SAGMaskHead',
                num_convs=2,
                in_channels=8,
                conv_out_channels=8,
                num_classes=3),
            train_cfg=ConfigDict(
                assigner=dict(
                    type='MaxIoUAssigner',
                    pos_iou_thr=0.5,
                    neg_iou_thr=0.5,
                    min_pos_iou=0.5),
                sampler=dict(
                    type='RandomSampler',
                    num=32,
                    pos_fraction=0.25,
                    add_gt_as_proposals=True),
                mask_size=28,
                pos_weight=-1,
                debug=False),
            test_cfg=ConfigDict(
                score_thr=0.,
                nms=dict(type='nms', iou_threshold=0.5),
                max_per_img=5,
                mask_thr_binary=0.5)))
    roi_head.init_weights()
    x = tuple(torch.randn(1, 8, 64 // s, 64 // s) for s in (4, 8, 16, 32))
    sample = DetDataSample(
        metainfo=dict(
            img_shape=(64, 64), ori_shape=(64, 64), scale_factor=(1., 1.)))
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[0., 0., 20., 20.]]),
        labels=torch.tensor([1]),
        masks=PolygonMasks([[np.array([0., 0., 20., 0., 20., 20., 0., 20.])]],
                           64, 64))
    proposals = InstanceData(
        bboxes=torch.tensor([[1., 1., 21., 19.], [30., 30., 60., 50.]]),
        scores=torch.tensor([0.9, 0.8]))

    losses = roi_head.loss(x, [proposals.clone()], [sample])
    assert {'loss_cls', 'loss_bbox', 'loss_mask'} <= set(losses)
    assert torch.isfinite(losses['loss_mask']).all()
    assert losses['loss_mask'].item() > 0

    roi_head.eval()
    with torch.no_grad():
        results = roi_head.predict(x, [proposals], [sample], rescale=True)
    assert results[0].masks.shape[1:] == (64, 64)
    assert results[0].masks.dtype == torch.bool
    assert len(results[0].masks) == len(results[0].bboxes) > 0
