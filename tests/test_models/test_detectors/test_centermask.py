"""The CenterMask detector: losses fall on a tiny batch, empty GT, no
detections, tensor mode, the one-place num_classes and mixed precision."""
import numpy as np
import pytest
import torch
from mmcv.ops import ModulatedDeformConv2d
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules

from detector_utils import LOSSES, batch, tiny_cfg


@pytest.fixture
def model():
    torch.manual_seed(0)
    detector = MODELS.build(tiny_cfg())
    detector.init_weights()
    return detector


def test_all_five_losses_fall_in_30_iterations(model):
    torch.manual_seed(0)
    data = batch(model, [1, 2])
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    history = {name: [] for name in LOSSES}
    for _ in range(30):
        losses = model.loss(data['inputs'], data['data_samples'])
        assert set(losses) == set(LOSSES)
        for name in LOSSES:
            history[name].append(losses[name].item())
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    for name, values in history.items():
        # medians of the first and last 10 iterations: the MaskIoU loss of
        # a tiny batch has single-iteration spikes (a RoI whose GT is
        # mostly outside it gets a large target), whose timing depends on
        # the CPU's float rounding
        first, last = np.median(values[:10]), np.median(values[-10:])
        assert np.isfinite(values).all(), name
        assert last < first, (name, values)


def test_image_without_annotations(model):
    model.train()
    data = batch(model, [3], num_shapes=0)
    assert len(data['data_samples'][0].gt_instances) == 0
    losses = model.loss(data['inputs'], data['data_samples'])
    assert set(losses) == set(LOSSES)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()  # graph-connected even with nothing to learn
    assert float(losses['loss_mask']) == 0.0
    assert float(losses['loss_mask_iou']) == 0.0


def test_no_detections_give_empty_results(model):
    model.eval()
    model.bbox_head.test_cfg['score_thr'] = 1.0  # nothing passes
    data = batch(model, [4], training=False)
    with torch.no_grad():
        result = model.predict(data['inputs'], data['data_samples'])[0]
    pred = result.pred_instances
    assert pred.bboxes.shape == (0, 4)
    assert pred.masks.shape == (0, 64, 64)
    assert len(pred.scores) == len(pred.labels) == len(pred.mask_scores) == 0


def test_predict_fields_and_tensor_mode(model):
    model.eval()
    model.bbox_head.test_cfg['score_thr'] = 0.0
    data = batch(model, [5, 6], training=False)
    with torch.no_grad():
        results = model.predict(data['inputs'], data['data_samples'])
        outs = model._forward(data['inputs'], data['data_samples'])
        outs_no_samples = model._forward(data['inputs'])
    for result in results:
        pred = result.pred_instances
        assert 0 < len(pred) <= 50
        assert pred.masks.dtype == torch.bool
        assert pred.masks.shape[1:] == (64, 64)
        assert pred.mask_scores.shape == pred.scores.shape
        assert torch.isfinite(pred.mask_scores).all()
    cls_scores, bbox_preds, centernesses = outs[:3]
    assert [tuple(c.shape) for c in cls_scores] == [(2, 3, 8, 8), (2, 3, 4, 4),
                                                    (2, 3, 2, 2), (2, 3, 1, 1),
                                                    (2, 3, 1, 1)]
    assert len(bbox_preds) == len(centernesses) == 5
    assert len(outs) == len(outs_no_samples) > 3


LOW_PRECISION = [torch.bfloat16, torch.float16]


def loss_modules(model):
    """The five loss modules, by the name of the loss they compute."""
    return dict(
        loss_cls=model.bbox_head.loss_cls,
        loss_bbox=model.bbox_head.loss_bbox,
        loss_centerness=model.bbox_head.loss_centerness,
        loss_mask=model.roi_head.mask_head.loss_mask,
        loss_mask_iou=model.roi_head.mask_iou_head.loss_iou)


@pytest.mark.parametrize('dtype', LOW_PRECISION)
def test_mixed_precision_losses_in_float32(model, dtype):
    """Under autocast (what ``--amp`` runs) the convolutions give ``dtype``
    but every loss, the mask and MaskIoU ones included, is computed from
    float32 inputs and is a finite float32 value with finite gradients."""
    model.train()
    # 160 px: P7 is 2x2. torch 2.13's CPU bfloat16 conv backward gives
    # non-finite weight gradients now and then on a 1x1 input (P7 of a
    # 64 px image; ~5% of calls of a lone stride-2 conv), not our code
    data = batch(model, [1, 2], size=160)
    seen = {}

    def record(name):
        def hook(module, args, out):
            seen[name] = ([a.dtype for a in args if a.is_floating_point()],
                          out.dtype)

        return hook

    for name, module in loss_modules(model).items():
        module.register_forward_hook(record(name))
    logits = []
    model.roi_head.mask_head.conv_logits.register_forward_hook(
        lambda m, args, out: logits.append(out.dtype))
    with torch.autocast('cpu', dtype=dtype):
        losses = model.loss(data['inputs'], data['data_samples'])
    assert logits == [dtype]  # autocast was on: the mask head ran in dtype
    assert set(seen) == set(LOSSES)
    for name, (input_dtypes, output_dtype) in seen.items():
        # predictions (and float targets) in float32; labels stay integer
        assert input_dtypes and set(input_dtypes) == {torch.float32}, name
        assert output_dtype == torch.float32, name
    for name in LOSSES:
        assert losses[name].dtype == torch.float32, name
        assert torch.isfinite(losses[name]), name
    sum(losses.values()).backward()
    for name, param in model.named_parameters():
        assert param.grad is None or torch.isfinite(param.grad).all(), name


@pytest.mark.parametrize('dtype', LOW_PRECISION)
def test_mixed_precision_predict(model, dtype):
    """``predict`` under autocast gives finite float32 boxes, scores and
    mask scores (pooling, box decoding, NMS and pasting run in float32)
    close to the float32 prediction."""
    model.eval()
    model.bbox_head.test_cfg['score_thr'] = 0.0
    data = batch(model, [5, 6], training=False)
    with torch.no_grad():
        reference = model.predict(data['inputs'], data['data_samples'])
        with torch.autocast('cpu', dtype=dtype):
            results = model.predict(data['inputs'], data['data_samples'])
    for result, ref in zip(results, reference):
        pred = result.pred_instances
        assert len(pred) > 0
        for field in ('bboxes', 'scores', 'mask_scores'):
            assert pred[field].dtype == torch.float32, field
            assert torch.isfinite(pred[field]).all(), field
        assert pred.masks.dtype == torch.bool
        assert pred.masks.shape[1:] == (64, 64)
        # the best detection is found again, within the low precision
        top = ref.pred_instances.scores.argmax()
        torch.testing.assert_close(
            pred.scores.max(), ref.pred_instances.scores[top], rtol=0.05,
            atol=0.)
        assert (pred.bboxes - ref.pred_instances.bboxes[top]).abs().amax(
            1).min() < 1.0


def test_num_classes_is_given_once():
    register_all_modules()
    model = MODELS.build(tiny_cfg(num_classes=5))
    assert model.bbox_head.num_classes == 5
    assert model.roi_head.mask_head.num_classes == 5
    assert model.roi_head.mask_iou_head.num_classes == 5
    cfg = tiny_cfg(num_classes=5)
    cfg.roi_head.mask_head.num_classes = 7
    with pytest.raises(
            ValueError, match='mask_head config says '
            'num_classes=7'):
        MODELS.build(cfg)


@pytest.mark.parametrize('num_classes', [0, -1, 2.5, True])
def test_no_foreground_class_is_refused_at_build(num_classes):
    register_all_modules()
    with pytest.raises(
            ValueError,
            match=rf'CenterMask: num_classes={num_classes!r}, but it needs '
            'at least one foreground class. Set model.num_classes'):
        MODELS.build(tiny_cfg(num_classes=num_classes))


def assert_features_close(out, ref):
    """|out - ref| <= 1e-4 x max |ref| (float32 summation order)."""
    torch.testing.assert_close(
        out, ref, rtol=0, atol=1e-4 * float(ref.abs().max()))


def channels_last_twin(model, cfg):
    """A ``channels_last=True`` detector with ``model``'s weights."""
    twin = MODELS.build(dict(cfg, channels_last=True))
    twin.load_state_dict(model.state_dict())
    return twin


def test_channels_last_matches_nchw(model):
    """Same features, masks and losses as NCHW; RoIAlign gets NCHW input
    (on a channels-last tensor it silently reads the wrong elements)."""
    twin = channels_last_twin(model, tiny_cfg())
    model.eval()
    twin.eval()
    data = batch(model, [7, 8], training=False)
    with torch.no_grad():
        feats = model.extract_feat(data['inputs'])
        feats_cl = twin.extract_feat(data['inputs'])
        assert feats_cl[0].is_contiguous(memory_format=torch.channels_last)
        for ref, out in zip(feats, feats_cl):
            assert_features_close(out, ref)
        model.bbox_head.test_cfg['score_thr'] = 0.0
        dets = model.bbox_head.predict(feats, data['data_samples'])
        assert len(dets[0]) > 0
        ref = model.roi_head.predict(
            feats, [d.clone() for d in dets],
            data['data_samples'],
            rescale=False)
        out = twin.roi_head.predict(
            feats_cl, [d.clone() for d in dets],
            data['data_samples'],
            rescale=False)
    for r, o in zip(ref, out):
        torch.testing.assert_close(
            o.mask_scores, r.mask_scores, rtol=1e-4, atol=1e-5)
        assert (o.masks != r.masks).float().mean() < 1e-3

    model.train()
    twin.train()
    data = batch(model, [1, 2])
    torch.manual_seed(0)
    losses = model.loss(data['inputs'], data['data_samples'])
    torch.manual_seed(0)
    losses_cl = twin.loss(data['inputs'], data['data_samples'])
    for name in LOSSES:
        torch.testing.assert_close(
            losses_cl[name], losses[name], rtol=1e-4, atol=1e-6, msg=name)


def test_channels_last_default_follows_the_device():
    """By default (``'cpu'``) the network runs NHWC on the CPU only; an
    unknown value is refused with the choices."""
    cfg = tiny_cfg()
    cfg.pop('channels_last')
    model = MODELS.build(cfg)
    assert model.channels_last == 'cpu'
    assert model.uses_channels_last(torch.device('cpu'))
    assert not model.uses_channels_last(torch.device('cuda'))
    model.eval()
    with torch.no_grad():
        feats = model.extract_feat(torch.zeros(1, 3, 64, 64))
    assert feats[0].is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="channels_last='gpu'.*'cpu'"):
        MODELS.build(dict(cfg, channels_last='gpu'))


def test_channels_last_with_deformable_backbone():
    """The DCNv2 layers of VoVNet get NCHW input under channels_last (on a
    channels-last tensor mmcv's kernel reads the wrong elements)."""
    cfg = tiny_cfg()
    cfg.backbone.update(
        arch='V-19-slim',
        dcn=dict(type='DCNv2', deform_groups=1),
        stage_with_dcn=(False, True, True, True))
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    for name, param in model.backbone.named_parameters():
        if 'conv_offset' in name:  # non-zero offsets and masks
            torch.nn.init.normal_(param, std=0.1)
    twin = channels_last_twin(model, cfg)
    outputs = {id(model): [], id(twin): []}
    for detector in (model, twin):
        detector.eval()
        for module in detector.modules():
            if isinstance(module, ModulatedDeformConv2d):
                module.register_forward_hook(lambda m, a, out, key=id(
                    detector): outputs[key].append(out))
    data = batch(model, [9], training=False)
    with torch.no_grad():
        feats = model.extract_feat(data['inputs'])
        feats_cl = twin.extract_feat(data['inputs'])
    assert len(outputs[id(twin)]) == len(outputs[id(model)]) == 9
    for ref, out in zip(outputs[id(model)], outputs[id(twin)]):
        assert_features_close(out, ref)
    for ref, out in zip(feats, feats_cl):
        assert_features_close(out, ref)
