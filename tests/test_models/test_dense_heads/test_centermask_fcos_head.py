"""Tests of CenterMaskFCOSHead: the behaviour the golden data
(``tests/test_fidelity/``) cannot isolate: ranking, caps, ties, empty cases,
train-time detections, loss normalisation, the maskrcnn-benchmark switches.
"""
import doctest
import math
from typing import List, Sequence, Tuple

import pytest
import torch
import torch.nn.functional as F
from golden_utils import convert_part
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

import mmcentermask.models.dense_heads.centermask_fcos_head as head_module
from mmcentermask.converters.centermask2 import reshape_to_target
from mmcentermask.converters.engine import Part
from mmcentermask.converters.key_tables.fcos_head import \
    fcos_head_key_to_mmdet
from mmcentermask.models.dense_heads import CenterMaskFCOSHead
from mmcentermask.models.losses import CenterMaskGIoULoss

STRIDES = (8, 16, 32, 64, 128)
LEVELS = (3, 4, 5, 6, 7)
NUM_CLASSES = 80
SMALL_SIZES = ((6, 6), (3, 3), (2, 2), (1, 1), (1, 1))  # P3-P7 of 48x48
HeadOutputs = Tuple[List[torch.Tensor], List[torch.Tensor],
                    List[torch.Tensor]]  # cls logits, distances, ctr logits
C2_TEST_CFG = dict(
    nms_pre=1000,
    score_thr=0.05,
    nms=dict(type='nms', iou_threshold=0.6),
    max_per_img=50)


def build_head(**kwargs) -> CenterMaskFCOSHead:
    """A small head (32 channels) through the registry."""
    cfg = dict(
        type='CenterMaskFCOSHead',
        num_classes=NUM_CLASSES,
        in_channels=32,
        feat_channels=32,
        stacked_convs=1,
        test_cfg=C2_TEST_CFG)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def blank_outputs(
        sizes: Sequence[Tuple[int, int]] = SMALL_SIZES) -> HeadOutputs:
    """Head outputs of one image with no candidate anywhere: class logits
    -20, 1-px distances, centerness logit 0 (ctr 0.5)."""
    cls = [torch.full((1, NUM_CLASSES, h, w), -20.) for h, w in sizes]
    reg = [torch.ones(1, 4, h, w) for h, w in sizes]
    ctr = [torch.zeros(1, 1, h, w) for h, w in sizes]
    return cls, reg, ctr


def set_candidate(outputs: HeadOutputs,
                  level: int,
                  row: int,
                  col: int,
                  label: int,
                  cls_prob: float,
                  ctr_prob: float,
                  dist: float = 1.0) -> None:
    """Place one candidate (probabilities, distance in px) on P3+level."""
    cls, reg, ctr = outputs
    cls[level][0, label, row, col] = logit(cls_prob)
    ctr[level][0, 0, row, col] = logit(ctr_prob)
    reg[level][0, :, row, col] = dist


def predict(head: CenterMaskFCOSHead,
            outputs: HeadOutputs,
            img_shape: Tuple[int, int] = (48, 48),
            rescale: bool = False,
            scale_factor: Tuple[float, float] = (1., 1.),
            **cfg) -> InstanceData:
    meta = dict(img_shape=img_shape, scale_factor=scale_factor)
    return head.predict_by_feat(
        *outputs,
        batch_img_metas=[meta],
        cfg=dict(C2_TEST_CFG, **cfg),
        rescale=rescale)[0]


# --------------------------------------------------------------------------
# weights conversion and construction
# --------------------------------------------------------------------------


@pytest.mark.parametrize('c2_key, mmdet_key', [
    ('cls_tower.0.weight', 'cls_convs.0.conv.weight'),
    ('cls_tower.4.bias', 'cls_convs.1.gn.bias'),
    ('bbox_tower.9.weight', 'reg_convs.3.conv.weight'),
    ('bbox_tower.10.weight', 'reg_convs.3.gn.weight'),
    ('cls_logits.bias', 'conv_cls.bias'),
    ('bbox_pred.weight', 'conv_reg.weight'),
    ('ctrness.weight', 'conv_centerness.weight'),
    ('centerness.bias', 'conv_centerness.bias'),
    ('scales.4.scale', 'scales.4.scale'),
])
def test_c2_key_mapping(c2_key, mmdet_key):
    assert fcos_head_key_to_mmdet(c2_key) == mmdet_key


@pytest.mark.parametrize(
    'bad_key',
    ['cls_tower.2.weight', 'share_tower.0.weight', 'cls_logits.foo'])
def test_c2_key_mapping_rejects_unknown(bad_key):
    with pytest.raises(KeyError, match='unknown centermask2 FCOS head key'):
        fcos_head_key_to_mmdet(bad_key)


def fcos_part(src_prefix: str, dst_prefix: str) -> Part:
    """The FCOS-head part table of the full-model converters."""
    return Part('fcos', src_prefix, dst_prefix, fcos_head_key_to_mmdet,
                reshape_to_target)


def test_convert_c2_fcos_head_prefixes_and_scale_shape():
    src = {
        'rpn.head.scales.0.scale': torch.tensor([1.5]),
        'rpn.head.cls_tower.1.weight': torch.ones(32),
        'backbone.fpn.fpn_inner2.weight': torch.ones(1),
    }
    target = {
        'bbox_head.scales.0.scale': torch.tensor(1.),
        'bbox_head.cls_convs.0.gn.weight': torch.zeros(32),
    }
    out = convert_part(src, fcos_part('rpn.head.', 'bbox_head.'), target)
    assert list(out) == [
        'bbox_head.scales.0.scale', 'bbox_head.cls_convs.0.gn.weight'
    ]
    assert out['bbox_head.scales.0.scale'].shape == ()


def test_defaults_are_centermask2():
    head = build_head(stacked_convs=2)
    assert head.norm_on_bbox and head.centerness_on_reg
    assert head.center_sampling and head.center_sample_radius == 1.5
    assert head.strides == (8, 16, 32, 64, 128)
    assert isinstance(head.loss_bbox, CenterMaskGIoULoss)
    assert head.score_sqrt and not head.clip_boxes
    assert len(head.cls_convs) == len(head.reg_convs) == 2
    conv_module = head.reg_convs[0]
    assert conv_module.conv.bias is not None
    assert isinstance(conv_module.gn, torch.nn.GroupNorm)
    assert conv_module.gn.num_groups == 32
    head.init_weights()
    prior_bias = -math.log((1 - 0.01) / 0.01)
    assert torch.allclose(head.conv_cls.bias, torch.tensor(prior_bias))
    assert not head.conv_reg.bias.detach().any()
    assert 0.005 < head.cls_convs[0].conv.weight.detach().std() < 0.015


def test_accepts_fcos_head_arguments():
    head = build_head(
        regress_ranges=((-1, 32), (32, 64), (64, 128), (128, 256), (256, 1e8)),
        loss_cls=dict(
            type='FocalLoss',
            use_sigmoid=True,
            gamma=2.0,
            alpha=0.25,
            loss_weight=2.0),
        norm_cfg=dict(type='GN', num_groups=16, requires_grad=True),
        loss_bbox=dict(type='GIoULoss', loss_weight=1.0),
        dcn_on_last_conv=False)
    assert head.regress_ranges[0] == (-1, 32)
    assert head.loss_cls.loss_weight == 2.0


def test_rejects_unknown_loss_normalization():
    with pytest.raises(ValueError, match='loss_normalization'):
        build_head(loss_normalization='mean')


def test_module_doctests():
    assert doctest.testmod(head_module).failed == 0


# --------------------------------------------------------------------------
# post-processing
# --------------------------------------------------------------------------


def test_per_level_topk_ranks_by_cls_times_ctr():
    head = build_head()
    outputs = blank_outputs()
    # far apart: no NMS interaction
    set_candidate(outputs, 0, 0, 0, label=1, cls_prob=0.9, ctr_prob=0.1)
    set_candidate(outputs, 0, 5, 5, label=2, cls_prob=0.5, ctr_prob=0.9)
    set_candidate(outputs, 1, 2, 2, label=3, cls_prob=0.3, ctr_prob=0.5)

    result = predict(head, outputs, nms_pre=1)
    # top-1 per level by cls x ctr: (0.5 * 0.9) on P3, the only one on P4
    assert result.labels.tolist() == [2, 3]
    assert torch.allclose(result.scores, torch.tensor([0.45, 0.15]).sqrt())
    assert torch.allclose(result.bboxes[0], torch.tensor([43., 43., 45., 45.]))

    result = predict(head, outputs, nms_pre=2)
    assert result.labels.tolist() == [2, 3, 1]


def test_threshold_is_on_class_probability_and_score_is_sqrt():
    head = build_head()
    outputs = blank_outputs()
    set_candidate(outputs, 0, 0, 0, label=4, cls_prob=0.04, ctr_prob=0.99)
    set_candidate(outputs, 0, 5, 5, label=5, cls_prob=0.06, ctr_prob=0.01)
    result = predict(head, outputs)
    assert result.labels.tolist() == [5]
    assert torch.allclose(result.scores, torch.tensor([0.06 * 0.01]).sqrt())


def set_box(outputs: HeadOutputs, level: int, row: int, col: int, label: int,
            cls_prob: float, box: Sequence[float]) -> None:
    """Place a candidate (ctr 0.5) predicting ``box`` (x1, y1, x2, y2) px."""
    stride = STRIDES[level]
    x, y = col * stride + stride // 2, row * stride + stride // 2
    set_candidate(outputs, level, row, col, label, cls_prob, 0.5)
    outputs[1][level][0, :, row, col] = torch.tensor(
        [x - box[0], y - box[1], box[2] - x, box[3] - y])


@pytest.mark.parametrize('shift, kept_labels', [(3.9, [7, 9]),
                                                (4.1, [7, 7, 9])])
def test_nms_is_class_aware_with_threshold_0_6(shift, kept_labels):
    head = build_head()
    outputs = blank_outputs()
    box = [4., 4., 20., 20.]
    set_box(outputs, 0, 1, 1, label=7, cls_prob=0.9, box=box)
    # same class, shifted by s: IoU (16 - s) / (16 + s), 0.6 at s = 4
    set_box(outputs, 0, 1, 2, 7, 0.8, [4. + shift, 4., 20. + shift, 20.])
    # identical box: suppressed in the same class, kept in another one
    set_box(outputs, 0, 2, 1, 7, 0.7, box)
    set_box(outputs, 1, 0, 0, 9, 0.6, box)
    result = predict(head, outputs)
    assert sorted(result.labels.tolist()) == kept_labels
    assert torch.equal(result.bboxes[0], torch.tensor(box))


@pytest.mark.parametrize('max_per_img', [100, 50])
def test_max_per_img_cap(max_per_img):
    head = build_head()
    outputs = blank_outputs(((11, 11), (6, 6), (3, 3), (2, 2), (1, 1)))
    probs = torch.linspace(0.2, 0.9, 121).reshape(11, 11)
    outputs[0][0][0, 0] = torch.log(probs / (1 - probs))  # 2x2-px boxes
    result = predict(head, outputs, max_per_img=max_per_img)
    assert len(result) == max_per_img
    expected = (probs.flatten().sort(descending=True).values[:max_per_img] *
                0.5).sqrt()
    assert torch.allclose(result.scores, expected)


def test_max_per_img_keeps_ties_like_kthvalue():
    head = build_head()
    outputs = blank_outputs(((11, 11), (6, 6), (3, 3), (2, 2), (1, 1)))
    outputs[0][0][0, 0, :6] = logit(0.9)  # 66 equal best scores
    probs = torch.linspace(0.2, 0.5, 55).reshape(5, 11)
    outputs[0][0][0, 0, 6:] = torch.log(probs / (1 - probs))
    assert len(predict(head, outputs, max_per_img=50)) == 66
    assert len(predict(head, outputs, max_per_img=70)) == 70


def test_no_detection_gives_empty_instances():
    head = build_head()
    for rescale in (False, True):
        result = predict(
            head, blank_outputs(), rescale=rescale, scale_factor=(2., 2.))
        assert result.bboxes.shape == (0, 4)
        assert result.scores.shape == (0, )
        assert result.labels.shape == (0, )
        assert result.labels.dtype == torch.int64


def test_boxes_are_not_clipped_and_rescaled_after_nms():
    head = build_head()
    outputs = blank_outputs()
    set_candidate(
        outputs, 0, 0, 0, label=1, cls_prob=0.9, ctr_prob=0.9, dist=10.)
    resized = predict(head, outputs, img_shape=(12, 12))
    assert torch.equal(resized.bboxes, torch.tensor([[-6., -6., 14., 14.]]))
    original = predict(
        head, outputs, img_shape=(12, 12), rescale=True, scale_factor=(2., 4.))
    assert torch.equal(original.bboxes, torch.tensor([[-3., -1.5, 7., 3.5]]))
    assert torch.equal(original.scores, resized.scores)


def test_min_bbox_size_is_optional():
    head = build_head()
    outputs = blank_outputs()
    set_candidate(
        outputs, 0, 0, 0, label=1, cls_prob=0.9, ctr_prob=0.9, dist=0.)
    assert len(predict(head, outputs)) == 1
    assert len(predict(head, outputs, min_bbox_size=0)) == 0


# --------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------


def make_samples(
    gt_boxes: Sequence[Sequence[Sequence[float]]],
    gt_labels: Sequence[Sequence[int]],
    img_shape=(64, 64)) -> List[DetDataSample]:
    samples = []
    for boxes, labels in zip(gt_boxes, gt_labels):
        sample = DetDataSample(
            metainfo=dict(img_shape=img_shape, scale_factor=(1., 1.)))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            labels=torch.tensor(labels, dtype=torch.int64))
        samples.append(sample)
    return samples


def make_feats(num_imgs: int = 2, size: int = 128) -> Tuple[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return tuple(
        torch.rand(num_imgs, 32, size // s, size // s, generator=generator)
        for s in STRIDES)


def trainable_head(**kwargs) -> CenterMaskFCOSHead:
    """Seeded head whose outputs vary and give candidates (64 tower
    channels: GN(32) needs more than one value per group on a 1x1 P7)."""
    torch.manual_seed(0)
    head = build_head(feat_channels=64, **kwargs)
    head.init_weights()
    with torch.no_grad():
        for conv in (head.conv_cls, head.conv_reg, head.conv_centerness):
            conv.weight.normal_(0, 0.5)
        head.conv_cls.bias.fill_(-1.)
        head.conv_reg.bias.fill_(0.5)
    head.train()
    return head


def test_loss_with_empty_gt():
    head = trainable_head()
    samples = make_samples([[]], [[]])
    losses = head.loss(make_feats(1), samples)
    assert losses['loss_cls'] > 0, 'background still trains the classifier'
    assert losses['loss_bbox'] == 0 and losses['loss_centerness'] == 0
    for name, value in losses.items():
        assert torch.isfinite(value) and value.grad_fn is not None, name
    sum(losses.values()).backward()


def focal_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """fvcore ``sigmoid_focal_loss`` (alpha 0.25, gamma 2), summed."""
    target = F.one_hot(labels, NUM_CLASSES + 1)[:, :NUM_CLASSES].float()
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction='none')
    p_t = p * target + (1 - p) * (1 - target)
    alpha_t = 0.25 * target + 0.75 * (1 - target)
    return (alpha_t * ce * (1 - p_t)**2).sum()


def giou_ltrb(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """C2 ``IOULoss('giou')`` per pair, on (l, t, r, b) distances."""
    pl, pt, pr, pb = pred.unbind(1)
    tl, tt, tr, tb = target.unbind(1)
    inter = (torch.min(pl, tl) + torch.min(pr, tr)) * (
        torch.min(pb, tb) + torch.min(pt, tt))
    union = (tl + tr) * (tt + tb) + (pl + pr) * (pt + pb) - inter
    enclose = (torch.max(pl, tl) + torch.max(pr, tr)) * (
        torch.max(pb, tb) + torch.max(pt, tt))
    return 1 - ((inter + 1) / (union + 1) - (enclose - union) / enclose)


@pytest.mark.parametrize('normalization',
                         ['centermask2', 'maskrcnn_benchmark'])
def test_loss_normalization_by_hand(normalization):
    head = trainable_head(loss_normalization=normalization)
    samples = make_samples([[[4., 6., 40., 30.], [20., 20., 60., 62.]], []],
                           [[3, 5], []])
    feats = make_feats(2)
    cls_scores, bbox_preds, centernesses = head(feats)
    losses = head.loss_by_feat(cls_scores, bbox_preds, centernesses,
                               [s.gt_instances for s in samples],
                               [s.metainfo for s in samples])

    points = head.prior_generator.grid_priors(
        [c.shape[-2:] for c in cls_scores], device='cpu')
    labels, targets = head.get_targets(points,
                                       [s.gt_instances for s in samples])
    labels, targets = torch.cat(labels), torch.cat(targets)
    pos = labels < NUM_CLASSES
    num_pos = int(pos.sum())
    assert num_pos > 0

    def flat(maps):
        return torch.cat(
            [m.permute(0, 2, 3, 1).reshape(-1, m.size(1)) for m in maps])

    ctr_target = head.centerness_target(targets[pos])
    giou = giou_ltrb(flat(bbox_preds)[pos], targets[pos])
    bce = F.binary_cross_entropy_with_logits(
        flat(centernesses)[pos, 0], ctr_target, reduction='sum')
    focal = focal_sum(flat(cls_scores), labels)
    if normalization == 'centermask2':
        expected = (focal / num_pos,
                    (ctr_target * giou).sum() / ctr_target.sum(),
                    bce / num_pos)
    else:
        expected = (focal / (num_pos + 2),
                    (ctr_target * giou).sum() / ctr_target.sum(),
                    bce / num_pos)
    for name, value in zip(('loss_cls', 'loss_bbox', 'loss_centerness'),
                           expected):
        assert torch.allclose(losses[name], value, rtol=1e-5), name
    if normalization == 'maskrcnn_benchmark':
        # MB divides the cls loss by num_pos + num_imgs, C2 by num_pos
        assert not torch.allclose(focal / num_pos, expected[0])


# --------------------------------------------------------------------------
# train-time proposals
# --------------------------------------------------------------------------


def test_train_proposals_are_pixels_like_eval_predict():
    cfg = dict(C2_TEST_CFG, nms_pre=30, max_per_img=20)
    head = trainable_head(test_cfg=cfg)
    feats = make_feats(2)
    samples = make_samples([[[4., 6., 40., 30.]], [[20., 20., 60., 62.]]],
                           [[3], [5]])
    losses, proposals = head.loss_and_predict(feats, samples, cfg)
    assert set(losses) == {'loss_cls', 'loss_bbox', 'loss_centerness'}
    head.eval()
    with torch.no_grad():
        expected = head.predict(feats, samples, rescale=False)
    for train_res, eval_res in zip(proposals, expected):
        assert len(train_res) == 20
        assert not train_res.bboxes.requires_grad
        for field in ('bboxes', 'scores', 'labels'):
            assert torch.equal(train_res[field], eval_res[field]), field
    # the widest box spans several P3 strides: pixels, not stride units
    widths = proposals[0].bboxes[:, 2] - proposals[0].bboxes[:, 0]
    assert widths.max() > 8


# --------------------------------------------------------------------------
# maskrcnn-benchmark switches
# --------------------------------------------------------------------------

MB_SWITCHES = dict(norm_on_bbox=False, score_sqrt=False, clip_boxes=True)


def test_mb_regression_is_exp_in_pixels():
    c2_head = trainable_head()
    mb_head = trainable_head(**MB_SWITCHES)
    mb_head.load_state_dict(c2_head.state_dict())
    raw = []
    for head in (c2_head, mb_head):
        head.eval()
        head.conv_reg.register_forward_hook(
            lambda module, args, out: raw.append(out))
    feats = make_feats(1)
    with torch.no_grad():
        c2_reg = c2_head(feats)[1]
        mb_reg = mb_head(feats)[1]
    for lvl, stride in enumerate(STRIDES):
        scale = c2_head.scales[lvl].scale
        scaled = raw[lvl] * scale
        assert torch.equal(raw[lvl], raw[lvl + len(STRIDES)])
        assert torch.allclose(c2_reg[lvl], scaled.clamp(min=0) * stride)
        assert torch.allclose(mb_reg[lvl], scaled.exp())


def test_mb_targets_are_pixels():
    c2_head, mb_head = build_head(), build_head(**MB_SWITCHES)
    points = c2_head.prior_generator.grid_priors([(8, 8), (4, 4), (2, 2),
                                                  (1, 1), (1, 1)],
                                                 device='cpu')
    gts = [
        InstanceData(
            bboxes=torch.tensor([[4., 6., 40., 30.]]),
            labels=torch.tensor([3]))
    ]
    c2_labels, c2_targets = c2_head.get_targets(points, gts)
    mb_labels, mb_targets = mb_head.get_targets(points, gts)
    for lvl, stride in enumerate(STRIDES):
        assert torch.equal(c2_labels[lvl], mb_labels[lvl])
        assert torch.equal(c2_targets[lvl] * stride, mb_targets[lvl])


def test_mb_postprocess_clips_and_does_not_sqrt():
    outputs = blank_outputs()
    set_candidate(
        outputs, 0, 0, 0, label=1, cls_prob=0.9, ctr_prob=0.4, dist=10.)
    set_candidate(outputs, 0, 5, 5, label=2, cls_prob=0.04, ctr_prob=0.9)
    c2 = predict(build_head(), outputs, img_shape=(12, 20))
    mb = predict(
        build_head(**MB_SWITCHES), outputs, img_shape=(12, 20), score_thr=0.03)
    assert torch.equal(c2.bboxes, torch.tensor([[-6., -6., 14., 14.]]))
    assert torch.allclose(c2.scores, torch.tensor([0.36]).sqrt())
    assert mb.labels.tolist() == [1, 2]
    assert torch.equal(mb.bboxes[0], torch.tensor([0., 0., 14., 11.]))
    assert torch.allclose(mb.scores, torch.tensor([0.36, 0.036]))


@pytest.mark.parametrize('key, value', [('nms_mode', 'fast'),
                                        ('candidate_sort', 'partial')])
def test_unknown_post_processing_switch_is_named(key, value):
    head = build_head()
    outputs = blank_outputs()
    set_candidate(outputs, 0, 1, 1, 3, 0.9, 0.9, dist=4.)
    with pytest.raises(ValueError, match=f'{key}.*{value}'):
        predict(head, outputs, **{key: value})


@pytest.mark.parametrize('nms_mode', ['auto', 'exact', 'batched'])
@pytest.mark.parametrize('candidate_sort', ['topk', 'full'])
def test_post_processing_switches_agree_on_separated_boxes(
        nms_mode, candidate_sort):
    """Every NMS mode and candidate sort keeps the same detections (they
    differ only at rounding and exact ties)."""
    head = build_head()
    outputs = blank_outputs()
    # 40 px boxes 8 px apart (IoU 0.67 > 0.6): the second is suppressed
    set_candidate(outputs, 0, 1, 1, 3, 0.9, 0.9, dist=20.)
    set_candidate(outputs, 0, 1, 2, 3, 0.8, 0.9, dist=20.)
    set_candidate(outputs, 0, 4, 4, 5, 0.7, 0.9, dist=20.)
    result = predict(
        head, outputs, nms_mode=nms_mode, candidate_sort=candidate_sort)
    assert result.labels.tolist() == [3, 5]
    assert torch.allclose(result.scores,
                          torch.tensor([0.81, 0.63]).sqrt())
