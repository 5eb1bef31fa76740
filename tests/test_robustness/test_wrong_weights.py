"""A checkpoint that mostly does not fit the model is an error naming the
counts and the converter; NaN weights are refused; legitimate partial loads
pass."""
import pytest
import torch
from mmdet.registry import MODELS
from mmengine.runner import load_checkpoint
from mmengine.runner.checkpoint import _load_checkpoint_with_prefix

from detector_utils import tiny_cfg
from mmcentermask.utils.weight_check import (MIN_MATCH_ENV,
                                             NonFiniteWeightsError,
                                             WeightMismatchError)


@pytest.fixture(scope='module')
def detector():
    torch.manual_seed(0)
    return MODELS.build(tiny_cfg())


@pytest.fixture(autouse=True)
def default_threshold(monkeypatch):
    monkeypatch.delenv(MIN_MATCH_ENV, raising=False)


def save(tmp_path, state_dict, name='ckpt.pth'):
    path = tmp_path / name
    torch.save({'state_dict': state_dict, 'meta': {}}, path)
    return str(path)


def test_own_checkpoint_loads(detector, tmp_path):
    path = save(tmp_path, detector.state_dict())
    load_checkpoint(detector, path)


def test_unconverted_centermask2_checkpoint_names_the_converter(
        detector, tmp_path):
    source = {
        'backbone.bottom_up.' + k[len('backbone.'):]: v
        for k, v in detector.state_dict().items() if k.startswith('backbone.')
    }
    source['proposal_generator.fcos_head.cls_logits.weight'] = torch.zeros(
        3, 32, 3, 3)
    before = detector.state_dict()['bbox_head.conv_cls.weight'].clone()
    with pytest.raises(WeightMismatchError) as info:
        load_checkpoint(detector,
                        save(tmp_path,
                             source))  # tools/test.py, demo, load_from
    message = str(info.value)
    assert 'centermask2_to_mmdet.py' in message
    n = len([
        k for k in detector.state_dict()
        if not k.endswith('num_batches_tracked')
    ])
    assert f'fills only 0 of the {n} tensors of CenterMask' in message
    extra = len([k for k in source if not k.endswith('num_batches_tracked')])
    assert f'{n} missing, {extra} unexpected' in message
    torch.testing.assert_close(
        detector.state_dict()['bbox_head.conv_cls.weight'], before)


def test_maskrcnn_benchmark_checkpoint_names_its_converter(detector, tmp_path):
    source = {
        'module.backbone.body.stem.conv1.weight': torch.zeros(8, 3, 3, 3),
        'module.rpn.head.cls_logits.weight': torch.zeros(3, 8, 3, 3)
    }
    with pytest.raises(
            WeightMismatchError, match='maskrcnn_benchmark_to_mmdet.py'):
        load_checkpoint(detector, save(tmp_path, source))


def test_another_model_is_refused(detector, tmp_path):
    other = MODELS.build(dict(type='ResNet', depth=18, init_cfg=None))
    with pytest.raises(WeightMismatchError, match='another model'):
        load_checkpoint(detector, save(tmp_path, other.state_dict()))


def test_unconverted_imagenet_vovnet_into_pretrained_backbone(tmp_path):
    """Pretrained on a timm-layout file stops and names vovnet2mmdet.py."""
    source = {
        'stem.0.conv.weight': torch.zeros(64, 3, 3, 3),
        'stages.0.blocks.0.conv_reduction.conv.weight':
        torch.zeros(128, 64, 1, 1),
        'head.fc.weight': torch.zeros(1000, 1024)
    }
    path = save(tmp_path, source)
    backbone = MODELS.build(
        dict(
            type='VoVNet',
            arch='V-19-slim-dw',
            init_cfg=dict(type='Pretrained', checkpoint=path)))
    with pytest.raises(WeightMismatchError, match='vovnet2mmdet.py'):
        backbone.init_weights()


def test_backbone_from_a_detector_checkpoint_with_prefix(detector, tmp_path):
    path = save(tmp_path, detector.state_dict())
    backbone = MODELS.build(
        dict(
            type='VoVNet',
            arch='V-19-slim-dw',
            norm_cfg=dict(type='BN', requires_grad=True),
            init_cfg=dict(
                type='Pretrained', checkpoint=path, prefix='backbone.')))
    backbone.init_weights()
    torch.testing.assert_close(backbone.stem[0].conv.weight,
                               detector.backbone.stem[0].conv.weight)
    assert _load_checkpoint_with_prefix('backbone.', path)


def test_other_num_classes_loads_all_but_the_classifiers(detector, tmp_path):
    path = save(tmp_path, detector.state_dict())
    torch.manual_seed(1)
    five = MODELS.build(tiny_cfg(num_classes=5))
    load_checkpoint(five, path)  # warns about the classifier shapes only
    torch.testing.assert_close(five.backbone.stem[0].conv.weight,
                               detector.backbone.stem[0].conv.weight)


def test_threshold_switch(detector, tmp_path, monkeypatch):
    half = dict(list(detector.state_dict().items())[:40])
    path = save(tmp_path, half)
    with pytest.raises(WeightMismatchError, match=f'set {MIN_MATCH_ENV}'):
        load_checkpoint(detector, path)
    monkeypatch.setenv(MIN_MATCH_ENV, '0')
    load_checkpoint(detector, path)
    monkeypatch.setenv(MIN_MATCH_ENV, 'most')
    with pytest.raises(ValueError, match='fraction in'):
        load_checkpoint(detector, path)


def test_nan_checkpoint_is_refused(detector, tmp_path):
    state = {k: v.clone() for k, v in detector.state_dict().items()}
    state['bbox_head.conv_reg.weight'][0, 0, 0, 0] = float('nan')
    state['neck.fpn_convs.0.conv.weight'][0, 0, 0, 0] = float('inf')
    with pytest.raises(NonFiniteWeightsError) as info:
        load_checkpoint(detector, save(tmp_path, state))
    assert 'in 2 of' in str(info.value)
    assert 'bbox_head.conv_reg.weight' in str(info.value)
    assert torch.isfinite(detector.bbox_head.conv_reg.weight).all()
