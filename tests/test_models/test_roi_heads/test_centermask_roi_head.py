"""CenterMaskRoIHead: mask-only training, prediction, tensor mode."""
from unittest import mock

import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.mask import PolygonMasks
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from roi_head_cfg import centermask_roi_head_cfg

CHANNELS, NUM_CLASSES = 8, 3
TRAIN_CFG = ConfigDict(
    assigner=dict(
        type='MaxIoUAssigner',
        pos_iou_thr=0.5,
        neg_iou_thr=0.5,
        min_pos_iou=0.5,
        match_low_quality=False,
        ignore_iof_thr=-1),
    sampler=dict(
        type='RandomSampler',
        num=512,
        pos_fraction=0.25,
        neg_pos_ub=-1,
        add_gt_as_proposals=True),
    mask_size=28,
    pos_weight=-1,
    mask_thr_binary=0.0)
TEST_CFG = ConfigDict(mask_thr_binary=0.5)


def build_head(train_cfg=TRAIN_CFG, **kwargs):
    torch.manual_seed(0)
    head = MODELS.build(
        centermask_roi_head_cfg(
            CHANNELS, NUM_CLASSES, fc_out_channels=16, train_cfg=train_cfg,
            test_cfg=TEST_CFG, **kwargs))
    head.init_weights()
    return head


def fpn_features(batch_size=2, requires_grad=False):
    """P3-P7 of a 96 x 128 padded batch."""
    torch.manual_seed(1)
    return tuple(
        torch.randn(
            batch_size,
            CHANNELS,
            max(96 // s, 1),
            max(128 // s, 1),
            requires_grad=requires_grad) for s in (8, 16, 32, 64, 128))


def polygon(x1, y1, x2, y2):
    return np.array([x1, y1, x2, y1, x2, y2, x1, y2], dtype=np.float64)


def data_sample(img_shape, ori_shape, scale_factor, gt_boxes=()):
    """Sample with rectangular polygon GT (label = index + 1)."""
    sample = DetDataSample(
        metainfo=dict(
            img_shape=img_shape,
            ori_shape=ori_shape,
            scale_factor=scale_factor))
    boxes = torch.tensor(gt_boxes, dtype=torch.float32).reshape(-1, 4)
    sample.gt_instances = InstanceData(
        bboxes=boxes,
        labels=torch.arange(len(boxes)) % NUM_CLASSES,
        masks=PolygonMasks([[polygon(*b)] for b in gt_boxes], *img_shape))
    return sample


def detections(boxes, labels=None, scores=None):
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    num = len(boxes)
    return InstanceData(
        bboxes=boxes,
        labels=torch.tensor(
            labels if labels is not None else [0] * num, dtype=torch.long),
        scores=torch.tensor(
            scores if scores is not None else np.linspace(0.9, 0.5, num),
            dtype=torch.float32))


def capture_extractor_calls(head):
    """Record (rois, batch_img_metas) of every mask RoI extractor call."""
    calls = []

    def hook(module, args, kwargs):
        calls.append((args[1].clone(), kwargs.get('batch_img_metas')))

    head.mask_roi_extractor.register_forward_pre_hook(hook, with_kwargs=True)
    return calls


def test_loss_uses_positives_only_and_passes_metas():
    """Image 0: two GTs, one proposal matching GT 0 (IoU >= 0.5), one
    background; image 1: no GT. Positives = matched proposal + 2 GTs."""
    head = build_head()
    calls = capture_extractor_calls(head)
    x = fpn_features(requires_grad=True)
    samples = [
        data_sample((96, 120), (48, 60), (2., 2.),
                    [[10., 10., 50., 60.], [60., 20., 110., 90.]]),
        data_sample((80, 128), (80, 128), (1., 1.)),
    ]
    proposals = [
        detections([[12., 8., 50., 58.], [0., 70., 20., 90.]]),
        detections([[30., 30., 90., 70.]]),
    ]
    losses = head.loss(x, proposals, samples)

    assert set(losses) == {'loss_mask', 'loss_mask_iou'}
    assert torch.isfinite(losses['loss_mask']).all()
    assert losses['loss_mask'].item() > 0
    assert losses['loss_mask_iou'].item() >= 0
    rois, metas = calls[0]
    assert len(calls) == 1 and rois.shape == (3, 5)
    assert rois[:, 0].tolist() == [0., 0., 0.]
    assert [m['img_shape'] for m in metas] == [(96, 120), (80, 128)]
    assert 'bboxes' in proposals[0]  # inputs not modified

    sum(losses.values()).sum().backward()
    assert x[0].grad.abs().sum() > 0
    assert head.mask_head.convs[0].conv.weight.grad.abs().sum() > 0
    assert head.mask_iou_head.fc_mask_iou.weight.grad.abs().sum() > 0


@pytest.mark.parametrize('with_gt', [False, True])
def test_loss_without_positives_is_graph_connected_zero(with_gt):
    """No GT in the batch, or GT but neither overlapping proposals nor GT
    boxes appended: both losses are zero and connected to the graph."""
    train_cfg = TRAIN_CFG.copy()
    if with_gt:
        train_cfg.sampler = dict(TRAIN_CFG.sampler, add_gt_as_proposals=False)
    head = build_head(train_cfg=train_cfg)
    x = fpn_features(batch_size=1, requires_grad=True)
    gt_boxes = [[10., 10., 30., 30.]] if with_gt else []
    samples = [data_sample((96, 128), (96, 128), (1., 1.), gt_boxes)]
    losses = head.loss(x, [detections([[60., 50., 100., 90.]])], samples)

    for name in ('loss_mask', 'loss_mask_iou'):
        assert losses[name].sum().item() == 0
        assert losses[name].requires_grad
    sum(losses.values()).sum().backward()
    assert all(f.grad is not None for f in x[:3])
    assert head.mask_head.conv_logits.weight.grad is not None


def test_predict_rescales_clips_and_scores():
    """Boxes rescaled to the original image and clipped; an empty box after
    clipping is dropped; scores unchanged; mask_scores = score * IoU."""
    head = build_head().eval()
    x = fpn_features(batch_size=1)
    sample = data_sample((96, 120), (48, 60), (2., 2.))
    dets = detections(
        [[10., 10., 50., 60.], [-40., 20., 60., 140.], [121., 10., 127., 20.]],
        labels=[2, 1, 0])
    with torch.no_grad():
        results = head.predict(x, [dets], [sample], rescale=True)[0]
        _, iou = head.forward(x, [dets], [sample])

    torch.testing.assert_close(
        results.bboxes, torch.tensor([[5., 5., 25., 30.], [0., 10., 30.,
                                                           48.]]))
    torch.testing.assert_close(results.scores, dets.scores[:2])
    assert results.labels.tolist() == [2, 1]
    torch.testing.assert_close(results.mask_scores,
                               dets.scores[:2] * iou[[0, 1], [2, 1]])
    assert results.masks.shape == (2, 48, 60)
    assert results.masks.dtype == torch.bool
    assert not results.masks[:, :, 31:].any()  # outside the clipped boxes
    assert dets.bboxes[0].tolist() == [10., 10., 50., 60.]  # not modified


def test_predict_without_rescale_uses_the_resized_canvas():
    head = build_head().eval()
    sample = data_sample((96, 120), (48, 60), (2., 2.))
    dets = detections([[10., 10., 50., 60.], [100., 50., 130., 99.]])
    with torch.no_grad():
        results = head.predict(fpn_features(1), [dets], [sample])[0]
    assert results.masks.shape == (2, 96, 120)
    torch.testing.assert_close(
        results.bboxes,
        torch.tensor([[10., 10., 50., 60.], [100., 50., 120., 96.]]))


def test_mmdet_mode_keeps_unclipped_boxes():
    head = build_head(clip_boxes=False).eval()
    sample = data_sample((96, 120), (48, 60), (2., 2.))
    dets = detections([[-40., 20., 60., 140.], [121., 10., 127., 20.]])
    with torch.no_grad():
        results = head.predict(
            fpn_features(1), [dets], [sample], rescale=True)[0]
    torch.testing.assert_close(
        results.bboxes,
        torch.tensor([[-20., 10., 30., 70.], [60.5, 5., 63.5, 10.]]))
    assert results.masks.shape == (2, 48, 60)


@pytest.mark.parametrize('clip_boxes', [True, False])
def test_mask_pasted_into_clipped_or_unclipped_box(clip_boxes):
    """A 28 x 28 mask whose left half is foreground, predicted for the box
    [-60, 0, 60, 48] of a 48 x 60 image. detectron2 pastes it into the
    clipped box [0, 0, 60, 48]: left half of the image set. mmdet pastes it
    into the unclipped box, whose foreground half lies outside the image."""
    head = build_head(clip_boxes=clip_boxes).eval()
    mask_preds = torch.full((1, NUM_CLASSES, 28, 28), -20.)
    mask_preds[:, 1, :, :14] = 20.
    fake = dict(
        mask_preds=mask_preds,
        label_mask_preds=mask_preds[:, 1],
        mask_feats=torch.zeros(1, CHANNELS, 14, 14),
        mask_iou_preds=torch.ones(1, NUM_CLASSES))
    sample = data_sample((48, 60), (48, 60), (1., 1.))
    with mock.patch.object(head, 'mask_branch', return_value=fake):
        results = head.predict(
            fpn_features(1), [detections([[-60., 0., 60., 48.]], [1])],
            [sample],
            rescale=True)[0]
    masks = results.masks[0]
    if clip_boxes:
        assert masks[:, :29].all() and not masks[:, 31:].any()
    else:
        assert not masks.any()


@pytest.mark.parametrize('rescale', [True, False])
def test_predict_with_zero_detections(rescale):
    """All fields present with zero rows; masks on the output canvas."""
    head = build_head().eval()
    samples = [
        data_sample((96, 120), (48, 60), (2., 2.)),
        data_sample((80, 128), (80, 128), (1., 1.)),
    ]
    canvases = [(48, 60), (80, 128)] if rescale else [(96, 120), (80, 128)]
    for dets in ([detections([]), detections([])],
                 [detections([]),
                  detections([[10., 10., 50., 60.]])]):
        with torch.no_grad():
            results = head.predict(
                fpn_features(2), dets, samples, rescale=rescale)
        for res, det, canvas in zip(results, dets, canvases):
            num = len(det)
            assert res.bboxes.shape == (num, 4)
            assert res.scores.shape == res.labels.shape == (num, )
            assert res.mask_scores.shape == (num, )
            assert res.masks.shape == (num, *canvas)
            assert res.masks.dtype == torch.bool


def test_forward_tensor_mode():
    head = build_head().eval()
    calls = capture_extractor_calls(head)
    samples = [data_sample((96, 128), (96, 128), (1., 1.))] * 2
    boxes = torch.rand(60, 4) * 40
    boxes[:, 2:] += boxes[:, :2] + 8
    dets = [detections(boxes, labels=[i % NUM_CLASSES for i in range(60)])] * 2
    with torch.no_grad():
        mask_preds, iou = head.forward(fpn_features(2), dets, samples)
        few_preds, few_iou = head.forward(fpn_features(2), [dets[0][:3]])
    assert mask_preds.shape == (100, NUM_CLASSES, 28, 28)
    assert iou.shape == (100, NUM_CLASSES)
    assert few_preds.shape == (3, NUM_CLASSES, 28, 28)
    assert few_iou.shape == (3, NUM_CLASSES)
    assert calls[0][1] is not None and calls[1][1] is None


@pytest.mark.parametrize('class_agnostic', [False, True])
def test_label_channel_only_gives_the_all_class_logits(class_agnostic):
    """The default prediction path computes only each detection's class
    channel; centermask2's path (``label_channel_only=False``: all K
    channels, then the detection's) gives the same mask probabilities and
    mask IoUs up to float32 summation order."""
    torch.manual_seed(0)
    head = build_head().eval()
    head.mask_head.class_agnostic = class_agnostic
    if class_agnostic:  # a one-channel predictor with the same input
        head.mask_head.conv_logits = torch.nn.Conv2d(
            head.mask_head.conv_logits.in_channels, 1, 1)
    for param in head.parameters():
        torch.nn.init.normal_(param, std=0.1)
    dets = detections([[2., 3., 40., 30.], [10., 5., 60., 47.],
                       [0., 0., 59., 47.]], [1, 0, 2])
    metas = [dict(img_shape=(48, 60))]
    with torch.no_grad():
        head.test_cfg['label_channel_only'] = True
        probs, ious = head.mask_probabilities(fpn_features(1), metas, [dets])
        head.test_cfg['label_channel_only'] = False
        ref_probs, ref_ious = head.mask_probabilities(
            fpn_features(1), metas, [dets])
    assert probs.shape == ref_probs.shape == (3, 28, 28)
    torch.testing.assert_close(probs, ref_probs, rtol=0, atol=1e-6)
    torch.testing.assert_close(ious, ref_ious, rtol=1e-5, atol=1e-6)
    assert probs.max() - probs.min() > 0.01  # not a constant map


def test_requires_a_mask_branch():
    with pytest.raises(ValueError, match='mask_roi_extractor'):
        MODELS.build(
            dict(
                type='CenterMaskRoIHead',
                mask_roi_extractor=None,
                mask_head=dict(type='SAGMaskHead'),
                mask_iou_head=dict(type='CenterMaskIoUHead')))
