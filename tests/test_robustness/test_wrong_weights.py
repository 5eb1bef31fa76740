"""A checkpoint that mostly does not fit the model is an error naming the
counts and the converter; for testing (a model whose init_weights() never
ran) every tensor must be filled; NaN weights are refused; legitimate partial
loads pass."""
import os.path as osp
from collections import Counter

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.config import Config
from mmengine.runner import load_checkpoint
from mmengine.runner.checkpoint import _load_checkpoint_with_prefix

from repo_paths import REPO_ROOT
from detector_utils import tiny_cfg
from mmcentermask.utils.weight_check import (MIN_MATCH_ENV,
                                             NonFiniteWeightsError,
                                             ResumeMismatchError,
                                             WeightMismatchError,
                                             check_resume_fit)


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
    """load_from for fine-tuning: the Runner runs init_weights() first."""
    path = save(tmp_path, detector.state_dict())
    torch.manual_seed(1)
    five = MODELS.build(tiny_cfg(num_classes=5))
    five.init_weights()
    load_checkpoint(five, path)  # warns about the classifier shapes only
    torch.testing.assert_close(five.backbone.stem[0].conv.weight,
                               detector.backbone.stem[0].conv.weight)


def test_other_num_classes_is_refused_for_testing(detector, tmp_path):
    """tools/test.py / the demo: nothing initialises the classifiers."""
    path = save(tmp_path, detector.state_dict())
    five = MODELS.build(tiny_cfg(num_classes=5))
    before = five.bbox_head.conv_cls.weight.clone()
    with pytest.raises(WeightMismatchError) as info:
        load_checkpoint(five, path)
    message = str(info.value)
    assert 'num_classes differs: the checkpoint has 3 classes, the model 5' \
        in message
    assert ('bbox_head.conv_cls.weight (3, 32, 3, 3) in the checkpoint vs '
            '(5, 32, 3, 3) in the model') in message
    assert 'bbox_head 25/27' in message
    assert 'load_from' in message
    torch.testing.assert_close(five.bbox_head.conv_cls.weight, before)


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


def test_resume_names_the_changed_num_classes(detector, monkeypatch):
    """--resume after editing num_classes (the hook calls check_resume_fit
    before the weights are loaded); MMCM_MIN_WEIGHT_MATCH does not relax
    it."""
    monkeypatch.setenv(MIN_MATCH_ENV, '0')
    state = detector.state_dict()
    check_resume_fit(detector, state, 'iter_8.pth')  # the same model fits
    five = MODELS.build(tiny_cfg(num_classes=5))
    with pytest.raises(ResumeMismatchError) as info:
        check_resume_fit(five, state, 'work/iter_8.pth')
    message = str(info.value)
    assert 'Cannot resume from work/iter_8.pth: of the' in message
    assert ', 6 have another shape in the checkpoint (' in message
    for key, theirs, ours in (('bbox_head.conv_cls.weight', '(3, 32, 3, 3)',
                               '(5, 32, 3, 3)'), ('bbox_head.conv_cls.bias',
                                                  '(3,)', '(5,)')):
        assert f'{key} {theirs} in the checkpoint vs {ours} in the model' \
            in message
    assert ('num_classes changed since the checkpoint was written (it has 3 '
            'classes, the model 5)') in message
    assert 'load_from=work/iter_8.pth and without --resume' in message
    missing = {k: v for k, v in state.items() if not k.startswith('neck.')}
    with pytest.raises(ResumeMismatchError, match='are missing from it'):
        check_resume_fit(detector, missing, 'iter_8.pth')


#: Point CenterMask and CenterMask with the same VoVNet-19-slim-dw backbone.
POINT_CONFIG = osp.join(
    REPO_ROOT, 'configs/centermask-point/'
    'centermask-point_vovnet-v2-19-slim-dw_ct-neck-32_1xb8-500i_shapes.py')
LITE_CONFIG = osp.join(
    REPO_ROOT, 'configs/centermask/'
    'centermask-lite_vovnet-v2-19-slim-dw_fpn-64_1xb8-1600i_shapes.py')


@pytest.fixture(scope='module')
def point_checkpoint(tmp_path_factory):
    register_all_modules()
    torch.manual_seed(0)
    point = MODELS.build(Config.fromfile(POINT_CONFIG).model)
    path = tmp_path_factory.mktemp('point') / 'point_centermask.pth'
    torch.save({'state_dict': point.state_dict(), 'meta': {}}, path)
    return str(path)


def lite_centermask():
    torch.manual_seed(1)
    return MODELS.build(Config.fromfile(LITE_CONFIG).model)


def tensors_per_module(model):
    return Counter(
        k.split('.')[0] for k in model.state_dict()
        if not k.endswith('num_batches_tracked'))


def test_related_model_is_refused_for_testing(point_checkpoint):
    """init_detector / tools/test.py: the shared backbone fills most tensors,
    the neck and heads would stay random."""
    model = lite_centermask()
    counts = tensors_per_module(model)
    assert counts['backbone'] >= sum(counts.values()) / 2  # passes 0.5
    neck = model.neck.lateral_convs[0].conv.weight.clone()
    with pytest.raises(WeightMismatchError) as info:
        load_checkpoint(model, point_checkpoint, map_location='cpu')
    message = str(info.value)
    total = sum(counts.values())
    assert (f'fills only {counts["backbone"]} of the {total} tensors of '
            'CenterMask') in message
    assert (f'backbone {counts["backbone"]}/{counts["backbone"]}, neck '
            f'0/{counts["neck"]}, bbox_head 0/{counts["bbox_head"]}, '
            f'roi_head 0/{counts["roi_head"]}') in message
    assert 'missing e.g. neck.lateral_convs.0.conv.weight' in message
    assert 'another model that shares the backbone' in message
    assert "init_weights() has not run" in message
    torch.testing.assert_close(model.neck.lateral_convs[0].conv.weight, neck)


def test_test_runner_refuses_a_related_model(point_checkpoint, tmp_path):
    """tools/test.py: Runner.test() loads load_from without init_weights()."""
    from mmengine.runner import Runner
    cfg = Config.fromfile(LITE_CONFIG)
    cfg.work_dir = str(tmp_path)
    cfg.load_from = point_checkpoint
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    with pytest.raises(WeightMismatchError, match='neck 0/'):
        runner.load_or_resume()  # what Runner.test() does after before_run


def test_demo_inferencer_refuses_a_related_model(point_checkpoint):
    """tools/demo.py's DetInferencer loads the same way."""
    from mmdet.apis import DetInferencer
    with pytest.raises(WeightMismatchError, match='neck 0/'):
        DetInferencer(
            model=LITE_CONFIG, weights=point_checkpoint, device='cpu')


def test_related_model_loads_for_fine_tuning(point_checkpoint):
    """load_from in training: the Runner runs init_weights() first."""
    model = lite_centermask()
    model.init_weights()
    load_checkpoint(model, point_checkpoint, map_location='cpu')
    point = torch.load(point_checkpoint, weights_only=True)['state_dict']
    torch.testing.assert_close(model.backbone.stem[0].conv.weight,
                               point['backbone.stem.0.conv.weight'])


def test_testing_tolerance_is_switchable(point_checkpoint, monkeypatch):
    monkeypatch.setenv(MIN_MATCH_ENV, '0.6')
    load_checkpoint(lite_centermask(), point_checkpoint, map_location='cpu')
    monkeypatch.setenv(MIN_MATCH_ENV, '0.9')
    with pytest.raises(WeightMismatchError, match='now 0.9'):
        load_checkpoint(lite_centermask(), point_checkpoint)


def test_point_centermask_refuses_a_centermask_checkpoint(tmp_path):
    """The other direction: CenterMask's weights into point CenterMask
    (same backbone) are refused for testing, naming point CenterMask."""
    register_all_modules()
    path = save(tmp_path, lite_centermask().state_dict(), 'centermask.pth')
    point = MODELS.build(Config.fromfile(POINT_CONFIG).model)
    with pytest.raises(WeightMismatchError, match='PointCenterMask'):
        load_checkpoint(point, path, map_location='cpu')
