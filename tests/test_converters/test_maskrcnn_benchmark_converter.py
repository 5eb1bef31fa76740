"""Full-model converter for the original maskrcnn-benchmark (MB) CenterMask
checkpoints, and the example MB config.

Source layouts come from ``checkpoint_layouts.py`` (MB names written from
the reference spec §9.2). The numerical check rebuilds the golden V-39
weights in MB layout (eps-free FrozenBN statistics, 81-row predictors) and
requires the MB conversion to reproduce the centermask2 conversion.
"""
import importlib.util

import pytest
import torch
import torch.nn.functional as F
from checkpoint_layouts import (TonylinsMobileNetV2, D2ResNet,
                                c2_vovnet_layout, layout_of, materialise,
                                mb_detector_layout, mb_resnet_layout,
                                mb_vovnet_layout, randomise_,
                                vovnet_out_channels)
from golden_utils import REPO_ROOT, golden_dir, golden_state_dict
from mmdet.registry import MODELS
from mmengine.config import Config

from mmcentermask.converters import (ConversionError, build_target_model,
                                     convert_centermask2,
                                     convert_maskrcnn_benchmark,
                                     fold_frozen_bn_eps)
from mmcentermask.converters.key_tables.fpn import maskrcnn_benchmark_fpn_key_to_mmdet
from mmcentermask.converters.key_tables.mask_branch import \
    maskrcnn_benchmark_mask_branch_key_to_mmdet
from mmcentermask.converters.key_tables.resnet import maskrcnn_benchmark_resnet_key_to_mmdet
from mmcentermask.converters.maskrcnn_benchmark import MB_PIXEL_MEAN

CONFIG_DIR = REPO_ROOT / 'configs' / 'centermask'
MB_CONFIG = str(CONFIG_DIR / 'centermask_vovnet-v2-39_fpn_mb-ms-3x_coco.py')
SLOW = pytest.mark.slow


def config_path(name: str) -> str:
    return str(CONFIG_DIR / f'{name}.py')


def mb_config(**backbone_and_neck) -> Config:
    """The MB example config, optionally with another backbone / neck /
    head size (as a user would derive it)."""
    cfg = Config.fromfile(MB_CONFIG)
    for key, value in backbone_and_neck.items():
        cfg.model[key] = value
    return cfg


def resnet50_mb_cfg() -> Config:
    c2 = Config.fromfile(config_path('centermask_r50-caffe_fpn_ms-3x_coco'))
    return mb_config(backbone=c2.model.backbone, neck=c2.model.neck)


def mnv2_lite_mb_cfg() -> Config:
    c2 = Config.fromfile(
        config_path('centermask-lite_mobilenet-v2_fpn_ms-4x_coco'))
    cfg = mb_config(backbone=c2.model.backbone, neck=c2.model.neck)
    for key in ('bbox_head', 'roi_head'):
        cfg.model[key] = c2.model[key]
    cfg.model.bbox_head.update(
        norm_on_bbox=False, score_sqrt=False, clip_boxes=True)
    return cfg


FAMILIES = {
    # name: (source layout factory, config factory, FPN channels, convs)
    'V-39': (lambda: mb_detector_layout(
        mb_vovnet_layout('V-39'), vovnet_out_channels('V-39'), 256, 4),
             lambda: MB_CONFIG),
    'V-39-dcn': (lambda: mb_detector_layout(
        mb_vovnet_layout('V-39', dcn=True), vovnet_out_channels('V-39'), 256, 4
    ), lambda: mb_config(
        backbone=dict(
            Config.fromfile(MB_CONFIG).model.backbone,
            dcn=dict(type='DCNv2', deform_groups=1),
            stage_with_dcn=(False, True, True, True)))),
    'R-50': (lambda: mb_detector_layout(
        mb_resnet_layout(layout_of(D2ResNet(50))), [512, 1024, 2048], 256, 4),
             resnet50_mb_cfg),
    'M-v2-lite': (lambda: mb_detector_layout(
        layout_of(TonylinsMobileNetV2()), [32, 96, 320], 128, 2),
                  mnv2_lite_mb_cfg),
}


@pytest.mark.parametrize('name', [
    pytest.param(n, marks=(SLOW, ) if n == 'V-39-dcn' else ())
    for n in FAMILIES
])
def test_family_converts_and_loads_strictly(name):
    layout_fn, cfg_fn = FAMILIES[name]
    source = materialise(layout_fn())
    cfg = cfg_fn()
    result = convert_maskrcnn_benchmark(source, cfg)
    model = build_target_model(cfg)
    model.load_state_dict(result.state_dict, strict=True)
    assert result.num_converted == len(source)
    assert result.source_format == 'maskrcnn_benchmark'
    # every source tensor arrives once; running_var folded, row 0 dropped
    src_by_marker = {float(v.reshape(-1)[-1]): k for k, v in source.items()}
    for key, value in result.state_dict.items():
        if key.endswith('num_batches_tracked') or key.startswith(
                'backbone.conv2.'):
            continue
        marker = float(value.reshape(-1)[-1])
        if key.endswith('running_var'):
            marker += 1e-5
            marker = min(src_by_marker, key=lambda m: abs(m - marker))
        src = source[src_by_marker[marker]]
        if key.endswith(('conv_logits.weight', 'conv_logits.bias',
                         'fc_mask_iou.weight', 'fc_mask_iou.bias')):
            assert src.shape[0] == 81 and value.shape[0] == 80
        elif key.endswith('running_var'):
            assert torch.allclose(value, src - 1e-5)
        else:
            assert torch.equal(value, src.reshape(value.shape))


def test_example_config_switches_mb_behaviour():
    cfg = Config.fromfile(MB_CONFIG)
    model = cfg.model
    assert model.data_preprocessor.mean == list(MB_PIXEL_MEAN)
    head = model.bbox_head
    assert head.norm_on_bbox is False and head.score_sqrt is False
    assert head.clip_boxes is True and head.loss_normalization == 'maskrcnn_benchmark'
    assert head.loss_bbox.enclose_eps == 1e-7
    for stage in (model.test_cfg.fcos, model.train_cfg.fcos_proposal):
        assert stage.score_thr == 0.03
        assert stage.nms == dict(type='nms', iou_threshold=0.6, offset=1)
    assert model.test_cfg.fcos.max_per_img == 50
    roi_layer = model.roi_head.mask_roi_extractor.roi_layer
    assert roi_layer.aligned is False and roi_layer.sampling_ratio == 2
    assert all(
        step.get('backend') == 'pillow' for step in cfg.test_pipeline
        if step['type'] == 'Resize')
    detector = MODELS.build(model)
    assert detector.bbox_head.score_sqrt is False
    assert detector.roi_head.mask_roi_extractor.roi_layers[0].aligned is False


def test_frozen_bn_fold_reproduces_eps_free_frozen_bn():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 5, 5, generator=gen)
    weight, bias = torch.rand(
        8, generator=gen) + .5, torch.randn(
            8, generator=gen)
    mean = torch.randn(8, generator=gen)
    var = torch.rand(8, generator=gen) * 0.01 + 2e-5
    # maskrcnn-benchmark FrozenBatchNorm2d: scale = w * var^-1/2, no eps
    scale = weight * var.rsqrt()
    expected = x * scale[:, None, None] + (bias - mean * scale)[:, None, None]
    folded, clamped = fold_frozen_bn_eps(var)
    ours = F.batch_norm(x, mean, folded, weight, bias, False, 0., 1e-5)
    assert clamped == 0
    assert torch.allclose(ours, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('key,expected', [
    ('stem.conv1.weight', 'conv1.weight'),
    ('stem.bn1.running_var', 'bn1.running_var'),
    ('layer1.0.downsample.1.bias', 'layer1.0.downsample.1.bias'),
    ('layer3.5.bn2.weight', 'layer3.5.bn2.weight'),
    ('layer2.1.conv2.conv.weight', 'layer2.1.conv2.weight'),
    ('layer2.1.conv2.offset.bias', 'layer2.1.conv2.conv_offset.bias'),
])
def test_mb_resnet_keys(key, expected):
    assert maskrcnn_benchmark_resnet_key_to_mmdet(key) == expected


@pytest.mark.parametrize('key,expected', [
    ('fpn_inner2.weight', 'lateral_convs.0.conv.weight'),
    ('fpn_inner4.bias', 'lateral_convs.2.conv.bias'),
    ('fpn_layer3.weight', 'fpn_convs.1.conv.weight'),
    ('top_blocks.p6.weight', 'fpn_convs.3.conv.weight'),
    ('top_blocks.p7.bias', 'fpn_convs.4.conv.bias'),
])
def test_mb_fpn_keys(key, expected):
    assert maskrcnn_benchmark_fpn_key_to_mmdet(key) == expected


@pytest.mark.parametrize('key,expected', [
    ('mask.feature_extractor.mask_fcn4.bias', 'mask_head.convs.3.conv.bias'),
    ('mask.feature_extractor.spatialAtt.conv.weight',
     'mask_head.spatial_attention.conv.weight'),
    ('mask.predictor.mask_fcn_logits.weight', 'mask_head.conv_logits.weight'),
    ('maskiou.feature_extractor.maskiou_fcn1.weight',
     'mask_iou_head.convs.0.weight'),
    ('maskiou.feature_extractor.maskiou_fc2.bias', 'mask_iou_head.fcs.1.bias'),
    ('maskiou.predictor.maskiou.weight', 'mask_iou_head.fc_mask_iou.weight'),
])
def test_mb_mask_branch_keys(key, expected):
    assert maskrcnn_benchmark_mask_branch_key_to_mmdet(key) == expected


@pytest.mark.parametrize('key', [
    'fpn_inner1.weight', 'fpn_inner5.weight', 'mask.predictor.extra.weight',
    'mask.feature_extractor.pooler.weight', 'layer5.0.conv1.weight'
])
def test_mb_tables_reject(key):
    for table in (maskrcnn_benchmark_resnet_key_to_mmdet, maskrcnn_benchmark_fpn_key_to_mmdet,
                  maskrcnn_benchmark_mask_branch_key_to_mmdet):
        with pytest.raises(KeyError):
            table(key)


@pytest.fixture(scope='module')
def v39_target():
    return build_target_model(MB_CONFIG).state_dict()


@pytest.fixture(scope='module')
def v39_source():
    return materialise(FAMILIES['V-39'][0]())


def test_model_without_maskiou_stops(v39_target):
    layout = mb_detector_layout(
        mb_vovnet_layout('V-39'),
        vovnet_out_channels('V-39'),
        256,
        4,
        with_maskiou=False)
    with pytest.raises(ConversionError) as err:
        convert_maskrcnn_benchmark(
            materialise(layout), MB_CONFIG, target=v39_target)
    assert 'roi_head.mask_iou_head.fc_mask_iou.weight' in str(err.value)


def test_predictor_without_background_row_stops(v39_source, v39_target):
    source = dict(v39_source)
    key = 'module.roi_heads.mask.predictor.mask_fcn_logits.weight'
    source[key] = source[key][1:]
    with pytest.raises(ConversionError, match='background'):
        convert_maskrcnn_benchmark(source, MB_CONFIG, target=v39_target)


def test_leftover_key_stops(v39_source, v39_target):
    source = dict(v39_source)
    source['module.rpn.head.share_tower.0.weight'] = torch.zeros(1)
    with pytest.raises(ConversionError, match='share_tower'):
        convert_maskrcnn_benchmark(source, MB_CONFIG, target=v39_target)


def test_pixel_mean_warning(v39_source, v39_target):
    result = convert_maskrcnn_benchmark(
        dict(v39_source), MB_CONFIG, target=v39_target)
    assert not any('WARNING' in n for n in result.notes)
    result = convert_maskrcnn_benchmark(
        dict(v39_source),
        config_path('centermask_vovnet-v2-39_fpn_ms-3x_coco'),
        target=v39_target)
    assert any('WARNING' in n and '102.9801' in n for n in result.notes)


def _golden_v39_in_mb_layout():
    """The golden centermask2 V-39 weights renamed to MB's layout, with
    MB's eps-free FrozenBN statistics (var + 1e-5) and an extra background
    row in the two predictors."""
    c2 = golden_state_dict('v39')
    renames = (
        ('backbone.bottom_up.', 'backbone.body.'),
        ('backbone.top_block.', 'backbone.fpn.top_blocks.'),
        ('proposal_generator.fcos_head.ctrness', 'rpn.head.centerness'),
        ('proposal_generator.fcos_head.', 'rpn.head.'),
        ('roi_heads.mask_head.predictor.',
         'roi_heads.mask.predictor.mask_fcn_logits.'),
        ('roi_heads.mask_head.deconv.',
         'roi_heads.mask.predictor.conv5_mask.'),
        ('roi_heads.mask_head.', 'roi_heads.mask.feature_extractor.'),
        ('roi_heads.maskiou_head.maskiou.',
         'roi_heads.maskiou.predictor.maskiou.'),
        ('roi_heads.maskiou_head.', 'roi_heads.maskiou.feature_extractor.'),
    )
    mb = {}
    for key, value in c2.items():
        new = key
        for old, repl in renames:
            if new.startswith(old):
                new = repl + new[len(old):]
                break
        for level, index in ((3, 2), (4, 3), (5, 4)):
            new = new.replace(f'backbone.fpn_lateral{level}.',
                              f'backbone.fpn.fpn_inner{index}.')
            new = new.replace(f'backbone.fpn_output{level}.',
                              f'backbone.fpn.fpn_layer{index}.')
        if new.endswith('running_var'):
            value = value + 1e-5
        if new.startswith(('roi_heads.mask.predictor.mask_fcn_logits',
                           'roi_heads.maskiou.predictor.')):
            value = torch.cat([torch.full_like(value[:1], 3.), value])
        mb['module.' + new] = value
    return c2, mb


@SLOW
def test_golden_weights_mb_layout_equal_c2_conversion():
    if not golden_dir().is_dir():
        pytest.skip('golden data not found')
    c2, mb = _golden_v39_in_mb_layout()
    target = build_target_model(MB_CONFIG).state_dict()
    ours = convert_maskrcnn_benchmark(mb, MB_CONFIG, target=target)
    reference = convert_centermask2(
        c2,
        config_path('centermask_vovnet-v2-39_fpn_ms-3x_coco'),
        target=target)
    assert list(ours.state_dict) == list(reference.state_dict)
    for key, value in reference.state_dict.items():
        if key.endswith('running_var'):
            assert torch.allclose(
                ours.state_dict[key], value, rtol=1e-6, atol=1e-7), key
        else:
            assert torch.equal(ours.state_dict[key], value), key


def test_cli(tmp_path, v39_source, capsys):
    spec = importlib.util.spec_from_file_location(
        'mb_cli',
        REPO_ROOT / 'tools/model_converters/maskrcnn_benchmark_to_mmdet.py')
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    src, dst = tmp_path / 'mb.pth', tmp_path / 'converted.pth'
    torch.save({'model': dict(v39_source), 'iteration': 270000}, src)
    assert cli.main([str(src), str(dst), '--config', MB_CONFIG]) == 0
    out = capsys.readouterr().out
    assert 'maskrcnn_benchmark: 293 source tensors, 293 converted' in out
    assert 'folded the eps-free FrozenBN of 39 backbone norms' in out
    assert 'dropped background row 0' in out
    checkpoint = torch.load(dst, weights_only=False)
    assert checkpoint['meta']['source_format'] == 'maskrcnn_benchmark'
    assert len(checkpoint['meta']['dataset_meta']['classes']) == 80


def test_reference_mobilenet_layout_matches_mb_spec():
    """Spot-check the MB/C2 MobileNetV2 layout against spec §9.1."""
    layout = layout_of(TonylinsMobileNetV2())
    assert layout['features.0.0.weight'] == (32, 3, 3, 3)
    assert 'features.1.conv.4.running_var' in layout
    assert 'features.1.conv.6.weight' not in layout
    assert layout['features.2.conv.6.weight'] == (24, 96, 1, 1)
    assert 'features.18.conv.0.weight' not in layout
    randomise_(TonylinsMobileNetV2())


@pytest.mark.parametrize('arch,millions', [('V-19-slim-dw', 1.9),
                                           ('V-19-slim', 3.2), ('V-19', 11.2),
                                           ('V-39', 26.2), ('V-57', 42.5),
                                           ('V-99', 70.6)])
def test_reference_vovnet_layout_counts(arch, millions):
    """The generated layouts reproduce the spec's parameter counts (§1.2:
    conv + eSE + a 1000-way classifier on the last stage)."""
    convs = sum(
        torch.Size(shape).numel()
        for key, shape in c2_vovnet_layout(arch).items() if 'norm' not in key)
    classifier = vovnet_out_channels(arch)[-1] * 1000 + 1000
    # the spec rounds to 0.1 M (V-99: 70.49 M counted here)
    assert (convs + classifier) / 1e6 == pytest.approx(
        millions, rel=2e-3, abs=0.05)
