"""Full-model converter for centermask2 (detectron2) checkpoints.

Source key sets come from hand-written generators of the authors' layouts
(``checkpoint_layouts.py``, written from the reference spec) and, for
Lite-V-19-slim-dw and V-39, from the golden ``manifest.json`` files (the real
centermask2 key names and shapes). Every conversion is loaded with
``strict=True`` into the model built from our config; tensor values are
markers that identify their source key.
"""
import json
import os.path as osp
import pickle
import re

import numpy as np
import pytest
import torch
from checkpoint_layouts import (TonylinsMobileNetV2, D2ResNet,
                                c2_detector_layout, c2_vovnet_layout,
                                layout_of, materialise, randomise_,
                                vovnet_out_channels)
from golden_utils import REPO_ROOT, golden_dir
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.runner import load_checkpoint

from mmcentermask.converters import (COCO_CLASSES, ConversionError,
                                     build_target_model, convert_centermask2,
                                     load_source_state_dict)
from mmcentermask.converters.cli import convert_checkpoint_file
from mmcentermask.converters.engine import \
    NUM_BATCHES_TRACKED_REASON as NBT_REASON
from mmcentermask.converters.key_tables.fpn import centermask2_fpn_key_to_mmdet
from mmcentermask.converters.key_tables.mobilenet_v2 import (
    MNV2_CONV2_REASON, mobilenetv2_key_to_mmdet)
from mmcentermask.converters.key_tables.resnet import centermask2_resnet_key_to_mmdet

CONFIG_DIR = REPO_ROOT / 'configs' / 'centermask'
SLOW = pytest.mark.slow


def config_path(name: str) -> str:
    return str(CONFIG_DIR / f'{name}.py')


# (config, backbone layout factory, C3-C5 channels, FPN channels, convs)
def _vovnet(arch, dcn=False):
    return lambda: c2_vovnet_layout(arch, dcn), vovnet_out_channels(arch)


def _resnet(depth, groups=1, width=64, stride_in_1x1=True):
    return (lambda: layout_of(D2ResNet(depth, groups, width, stride_in_1x1)),
            [512, 1024, 2048])


def _mobilenet():
    return lambda: layout_of(TonylinsMobileNetV2()), [32, 96, 320]


FAMILIES = {
    'centermask-lite_vovnet-v2-19-slim-dw_fpn_ms-4x_coco':
    (*_vovnet('V-19-slim-dw'), 128, 2),
    'centermask-lite_vovnet-v2-19-slim_fpn_ms-4x_coco':
    (*_vovnet('V-19-slim'), 128, 2),
    'centermask-lite_vovnet-v2-19_fpn_ms-4x_coco': (*_vovnet('V-19'), 128, 2),
    'centermask-lite_vovnet-v2-39_fpn_ms-4x_coco': (*_vovnet('V-39'), 128, 2),
    'centermask-lite_mobilenet-v2_fpn_ms-4x_coco': (*_mobilenet(), 128, 2),
    'centermask_vovnet-v2-39_fpn_ms-3x_coco': (*_vovnet('V-39'), 256, 4),
    'centermask_vovnet-v2-39-dcn_fpn_ms-3x_coco':
    (*_vovnet('V-39', dcn=True), 256, 4),
    'centermask_vovnet-v2-57_fpn_ms-3x_coco': (*_vovnet('V-57'), 256, 4),
    'centermask_vovnet-v2-57-dcn_fpn_ms-3x_coco': (*_vovnet('V-57', dcn=True),
                                                   256, 4),
    'centermask_vovnet-v2-99_fpn_ms-3x_coco': (*_vovnet('V-99'), 256, 4),
    'centermask_vovnet-v2-99-dcn_fpn_ms-3x_coco': (*_vovnet('V-99', dcn=True),
                                                   256, 4),
    'centermask_r50-caffe_fpn_ms-3x_coco': (*_resnet(50), 256, 4),
    'centermask_r101-caffe_fpn_ms-3x_coco': (*_resnet(101), 256, 4),
    'centermask_x101-32x8d_fpn_ms-3x_coco':
    (*_resnet(101, 32, 8, stride_in_1x1=False), 256, 4),
}
HEAVY = {
    'centermask_vovnet-v2-57_fpn_ms-3x_coco',
    'centermask_vovnet-v2-57-dcn_fpn_ms-3x_coco',
    'centermask_vovnet-v2-99_fpn_ms-3x_coco',
    'centermask_vovnet-v2-99-dcn_fpn_ms-3x_coco',
    'centermask_r101-caffe_fpn_ms-3x_coco',
    'centermask_x101-32x8d_fpn_ms-3x_coco',
}


def c2_source(name: str):
    backbone, in_channels, channels, convs = FAMILIES[name]
    return materialise(
        c2_detector_layout(backbone(), in_channels, channels, convs))


def test_every_c2_config_is_covered():
    """Every COCO config that has a centermask2 counterpart: all but the
    maskrcnn-benchmark one and ours with the stride-4 mask level."""
    configs = {
        osp.splitext(p.name)[0]
        for p in CONFIG_DIR.glob('*_coco.py')
        if '_mb-' not in p.name and '_mask-p2_' not in p.name
    }
    assert configs == set(FAMILIES)


@pytest.mark.parametrize(
    'name',
    [pytest.param(n, marks=(SLOW, ) if n in HEAVY else ()) for n in FAMILIES])
def test_family_converts_and_loads_strictly(name):
    source = c2_source(name)
    config = config_path(name)
    model = build_target_model(config)
    result = convert_centermask2(source, config, target=model.state_dict())
    model.load_state_dict(result.state_dict, strict=True)
    # every source tensor reaches exactly one target key, values untouched
    markers = {float(v.reshape(-1)[0]): k for k, v in source.items()}
    seen = set()
    for key, value in result.state_dict.items():
        if key.endswith('num_batches_tracked') or key.startswith(
                'backbone.conv2.'):
            continue
        src_key = markers[float(value.reshape(-1)[0])]
        assert value.numel() == source[src_key].numel()
        assert torch.equal(value.reshape(-1), source[src_key].reshape(-1))
        seen.add(src_key)
    assert seen == set(source)
    assert result.num_converted == len(source)
    assert result.per_part['fpn'] == 16
    convs = FAMILIES[name][3]
    assert result.per_part['fcos'] == 8 * convs + 11
    assert result.per_part['mask_branch'] == 4 * convs + 11
    added = {reason for _, reason in result.added}
    assert NBT_REASON in added
    if 'mobilenet' in name:
        assert MNV2_CONV2_REASON in added
    else:
        assert added == {NBT_REASON}


@pytest.mark.parametrize('variant,config', [
    ('lite_v19_slim_dw',
     'centermask-lite_vovnet-v2-19-slim-dw_fpn_ms-4x_coco'),
    ('v39', 'centermask_vovnet-v2-39_fpn_ms-3x_coco'),
])
def test_golden_manifest_layout(variant, config):
    """The real centermask2 key names and shapes (golden manifests), and our
    generator agrees with them."""
    path = golden_dir() / variant / 'manifest.json'
    if not path.is_file():
        pytest.skip(f'golden data not found: {path}')
    manifest = json.loads(path.read_text())
    layout = {e['key']: tuple(e['shape']) for e in manifest}
    backbone, in_channels, channels, convs = FAMILIES[config]
    assert layout == dict(
        c2_detector_layout(backbone(), in_channels, channels, convs))
    model = build_target_model(config_path(config))
    result = convert_centermask2(
        materialise(layout), config_path(config), target=model.state_dict())
    model.load_state_dict(result.state_dict, strict=True)


# --------------------------------------------------------------------------
# per-part tables
# --------------------------------------------------------------------------


@pytest.mark.parametrize('key,expected', [
    ('stem.conv1.weight', 'conv1.weight'),
    ('stem.conv1.norm.running_mean', 'bn1.running_mean'),
    ('res2.0.conv1.weight', 'layer1.0.conv1.weight'),
    ('res5.2.conv3.norm.bias', 'layer4.2.bn3.bias'),
    ('res3.0.shortcut.weight', 'layer2.0.downsample.0.weight'),
    ('res4.0.shortcut.norm.running_var', 'layer3.0.downsample.1.running_var'),
    ('res4.1.conv2_offset.bias', 'layer3.1.conv2.conv_offset.bias'),
])
def test_resnet_keys(key, expected):
    assert centermask2_resnet_key_to_mmdet(key) == expected


@pytest.mark.parametrize('key', [
    'stem.conv1.bias', 'res1.0.conv1.weight', 'res2.0.conv4.weight',
    'res2.0.conv1.norm.gamma', 'fc.weight'
])
def test_resnet_rejects(key):
    with pytest.raises(KeyError):
        centermask2_resnet_key_to_mmdet(key)


@pytest.mark.parametrize('key,expected', [
    ('features.0.0.weight', 'conv1.conv.weight'),
    ('features.0.1.running_var', 'conv1.bn.running_var'),
    ('features.1.conv.0.weight', 'layer1.0.depthwise_conv.conv.weight'),
    ('features.1.conv.4.bias', 'layer1.0.linear_conv.bn.bias'),
    ('features.2.conv.0.weight', 'layer2.0.expand_conv.conv.weight'),
    ('features.3.conv.4.weight', 'layer2.1.depthwise_conv.bn.weight'),
    ('features.6.conv.6.weight', 'layer3.2.linear_conv.conv.weight'),
    ('features.10.conv.7.running_mean',
     'layer4.3.linear_conv.bn.running_mean'),
    ('features.17.conv.3.weight', 'layer7.0.depthwise_conv.conv.weight'),
])
def test_mobilenetv2_keys(key, expected):
    assert mobilenetv2_key_to_mmdet(key) == expected


@pytest.mark.parametrize('key', [
    'features.18.conv.0.weight', 'features.1.conv.6.weight',
    'features.2.conv.2.weight', 'features.0.0.bias', 'classifier.1.weight'
])
def test_mobilenetv2_rejects(key):
    with pytest.raises(KeyError):
        mobilenetv2_key_to_mmdet(key)


@pytest.mark.parametrize('key,expected', [
    ('fpn_lateral3.weight', 'lateral_convs.0.conv.weight'),
    ('fpn_lateral5.bias', 'lateral_convs.2.conv.bias'),
    ('fpn_output4.weight', 'fpn_convs.1.conv.weight'),
    ('top_block.p6.weight', 'fpn_convs.3.conv.weight'),
    ('top_block.p7.bias', 'fpn_convs.4.conv.bias'),
])
def test_fpn_keys(key, expected):
    assert centermask2_fpn_key_to_mmdet(key) == expected


@pytest.mark.parametrize('key', [
    'fpn_lateral2.weight', 'fpn_output6.bias', 'top_block.p8.weight',
    'fpn_lateral3.scale'
])
def test_fpn_rejects(key):
    with pytest.raises(KeyError):
        centermask2_fpn_key_to_mmdet(key)


# --------------------------------------------------------------------------
# numerical equivalence of the ResNet and MobileNetV2 tables
# --------------------------------------------------------------------------


def _backbone_equivalence(reference, backbone_cfg, table, atol=1e-4):
    randomise_(reference)
    reference.eval()
    backbone = MODELS.build(backbone_cfg)
    backbone.eval()
    converted = {table(k): v for k, v in reference.state_dict().items()}
    target = backbone.state_dict()
    for key in target:
        if key not in converted and key.endswith('num_batches_tracked'):
            converted[key] = torch.zeros_like(target[key])
        elif key not in converted and key.startswith('conv2.'):
            converted[key] = target[key]  # MobileNetV2's unused 1x1 conv
    backbone.load_state_dict(converted, strict=True)
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, ours = reference(x), backbone(x)
    assert len(ours) == len(expected) == 3
    for o, e in zip(ours, expected):
        assert o.shape == e.shape
        err = (o - e).abs().max() / e.abs().max()
        assert err < atol, err


def test_resnet50_caffe_forward_matches_detectron2_layout():
    cfg = Config.fromfile(
        config_path('centermask_r50-caffe_fpn_ms-3x_coco')).model.backbone
    _backbone_equivalence(D2ResNet(50), cfg, centermask2_resnet_key_to_mmdet)


@SLOW
def test_resnext_pytorch_style_forward_matches_detectron2_layout():
    """X-101-32x8d semantics (stride in the 3x3, groups), on a ResNeXt-50 to
    keep it small."""
    cfg = Config.fromfile(
        config_path('centermask_x101-32x8d_fpn_ms-3x_coco')).model.backbone
    cfg.depth = 50
    _backbone_equivalence(
        D2ResNet(50, 32, 8, stride_in_1x1=False), cfg, centermask2_resnet_key_to_mmdet)


def test_mobilenetv2_forward_matches_tonylins_layout():
    cfg = Config.fromfile(
        config_path(
            'centermask-lite_mobilenet-v2_fpn_ms-4x_coco')).model.backbone
    _backbone_equivalence(TonylinsMobileNetV2(), cfg, mobilenetv2_key_to_mmdet)


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------

LITE = 'centermask-lite_vovnet-v2-19-slim-dw_fpn_ms-4x_coco'


@pytest.fixture(scope='module')
def lite_source():
    return c2_source(LITE)


@pytest.fixture(scope='module')
def lite_target():
    return build_target_model(config_path(LITE)).state_dict()


def test_leftover_source_key_stops(lite_source, lite_target):
    source = dict(lite_source)
    source['roi_heads.keypoint_head.conv_fcn1.weight'] = torch.zeros(1)
    source['backbone.fpn_lateral2.weight'] = torch.zeros(1)
    with pytest.raises(ConversionError) as err:
        convert_centermask2(source, config_path(LITE), target=lite_target)
    message = str(err.value)
    assert '2 source keys left over' in message
    assert 'roi_heads.keypoint_head.conv_fcn1.weight' in message
    assert 'backbone.fpn_lateral2.weight' in message


def test_missing_source_key_stops(lite_source, lite_target):
    source = dict(lite_source)
    del source['proposal_generator.fcos_head.scales.3.scale']
    del source['backbone.bottom_up.stage4.OSA4_1.ese.fc.bias']
    with pytest.raises(ConversionError) as err:
        convert_centermask2(source, config_path(LITE), target=lite_target)
    message = str(err.value)
    assert '2 target keys not filled' in message
    assert 'bbox_head.scales.3.scale' in message
    assert 'backbone.stage4.blocks.0.ese.fc.bias' in message


def test_shape_mismatch_stops(lite_source):
    """Lite weights for the full V-39 config."""
    with pytest.raises(ConversionError, match='shape mismatches'):
        convert_centermask2(
            dict(lite_source),
            config_path('centermask-lite_vovnet-v2-39_fpn_ms-4x_coco'))


def test_pixel_statistics_checked_then_dropped(lite_source, lite_target):
    source = dict(lite_source)
    source['pixel_mean'] = torch.tensor([103.530, 116.280,
                                         123.675]).view(3, 1, 1)
    source['pixel_std'] = torch.ones(3, 1, 1)
    result = convert_centermask2(source, config_path(LITE), target=lite_target)
    assert [k for k, _ in result.dropped] == ['pixel_mean', 'pixel_std']
    assert 'pixel_mean' not in result.state_dict
    assert result.num_source == len(source)

    source['pixel_mean'] = torch.tensor([102.9801, 115.9465,
                                         122.7717]).view(3, 1, 1)
    with pytest.raises(ConversionError) as err:
        convert_centermask2(source, config_path(LITE), target=lite_target)
    message = str(err.value)
    assert '102.98' in message and '103.53' in message
    assert 'data_preprocessor.mean' in message


def test_pixel_std_mismatch_names_both(lite_source, lite_target):
    source = dict(lite_source)
    source['pixel_std'] = torch.tensor([57.375, 57.120, 58.395])
    with pytest.raises(ConversionError) as err:
        convert_centermask2(source, config_path(LITE), target=lite_target)
    assert '57.375' in str(err.value) and '1.0' in str(err.value)


def test_bn_eps_other_than_frozen_bn_stops(lite_source):
    cfg = Config.fromfile(config_path(LITE))
    cfg.model.backbone.norm_cfg = dict(
        type='BN', eps=1e-3, requires_grad=False)
    with pytest.raises(ConversionError, match='eps'):
        convert_centermask2(dict(lite_source), cfg)


def test_mobilenet_conv2_only_when_unused():
    name = 'centermask-lite_mobilenet-v2_fpn_ms-4x_coco'
    cfg = Config.fromfile(config_path(name))
    cfg.model.backbone.out_indices = (2, 4, 7)
    cfg.model.neck.in_channels = [32, 96, 1280]
    with pytest.raises(ConversionError, match='backbone.conv2.conv.weight'):
        convert_centermask2(c2_source(name), cfg)


def test_module_prefix_and_numpy_values(lite_source, lite_target):
    source = {'module.' + k: v.numpy() for k, v in lite_source.items()}
    result = convert_centermask2(source, config_path(LITE), target=lite_target)
    assert result.num_converted == len(lite_source)


# --------------------------------------------------------------------------
# files and the CLI
# --------------------------------------------------------------------------


@pytest.mark.parametrize('fmt', ['pth_model', 'pth_bare', 'pkl'])
def test_checkpoint_files_load_in_mmengine(fmt, tmp_path, lite_source):
    if fmt == 'pkl':
        src = tmp_path / 'model_final.pkl'
        with open(src, 'wb') as f:
            pickle.dump(
                {
                    'model': {
                        k: v.numpy()
                        for k, v in lite_source.items()
                    },
                    '__author__': 'centermask2'
                }, f)
    else:
        src = tmp_path / 'model_final.pth'
        obj = dict(lite_source)
        if fmt == 'pth_model':
            obj = {'model': obj, 'iteration': 1, 'optimizer': {}}
        torch.save(obj, src)
    dst = tmp_path / 'converted.pth'
    result = convert_checkpoint_file(str(src), str(dst), config_path(LITE),
                                     convert_centermask2)
    checkpoint = torch.load(dst, weights_only=False)
    assert set(checkpoint) == {'state_dict', 'meta'}
    assert checkpoint['meta']['dataset_meta']['classes'] == COCO_CLASSES
    assert checkpoint['meta']['source_format'] == 'centermask2'
    assert len(checkpoint['state_dict']) == len(result.state_dict)
    # what tools/test.py does (Runner.load_checkpoint), strictly
    model = build_target_model(config_path(LITE))
    load_checkpoint(model, str(dst), map_location='cpu', strict=True)


def test_coco_classes_contiguous_order():
    from mmdet.datasets import CocoDataset
    assert COCO_CLASSES == tuple(CocoDataset.METAINFO['classes'])
    path = golden_dir() / 'images' / 'annotations.json'
    if path.is_file():
        categories = json.loads(path.read_text())['categories']
        names = [
            c['name']
            for c in sorted(categories, key=lambda c: c['class_index'])
        ]
        assert tuple(names) == COCO_CLASSES
        assert [c['id'] for c in sorted(categories,
                                        key=lambda c: c['class_index'])] == \
            sorted(c['id'] for c in categories)


def test_cli(tmp_path, lite_source, capsys):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'c2_cli', REPO_ROOT / 'tools/model_converters/centermask2_to_mmdet.py')
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    src, dst = tmp_path / 'src.pth', tmp_path / 'dst.pth'
    torch.save({'model': dict(lite_source)}, src)
    assert cli.main([str(src), str(dst), '--config', config_path(LITE)]) == 0
    out = capsys.readouterr().out
    assert re.search(r'194 source tensors, 194 converted, 0 dropped', out)
    assert 'parameters' in out and dst.exists()

    bad = dict(lite_source)
    bad['roi_heads.extra.weight'] = torch.zeros(1)
    torch.save({'model': bad}, src)
    dst2 = tmp_path / 'dst2.pth'
    assert cli.main([str(src), str(dst2), '--config', config_path(LITE)]) == 1
    assert 'roi_heads.extra.weight' in capsys.readouterr().err
    assert not dst2.exists()


def test_conversion_summary_lists_parts(lite_source, lite_target):
    result = convert_centermask2(
        dict(lite_source), config_path(LITE), target=lite_target)
    text = result.summary()
    for part in ('backbone', 'fpn', 'fcos', 'mask_branch'):
        assert part in text
    assert '22 BN num_batches_tracked' in text
    assert np.isclose(result.num_values,
                      sum(v.numel() for v in lite_target.values()))


def test_module_doctests():
    import doctest

    from mmcentermask.converters.key_tables import (fpn, mask_branch,
                                                    mobilenet_v2, resnet)
    for module in (fpn, mask_branch, mobilenet_v2, resnet):
        failures, tried = doctest.testmod(module)
        assert failures == 0 and tried > 0, module.__name__


@pytest.mark.parametrize('content, reason', [
    (b'', 'empty'),
    (b'model weights, honestly\n', 'not a checkpoint'),
    (b'PK\x03\x04truncated', 'not a checkpoint'),
])
def test_non_checkpoint_file_is_named(tmp_path, capsys, content, reason):
    """An empty, text or truncated file given to the converter: the error
    names the file and says it is not a checkpoint; nothing is written."""
    from mmcentermask.converters.cli import main
    src, dst = tmp_path / 'model_final.pth', tmp_path / 'out.pth'
    src.write_bytes(content)
    with pytest.raises(ConversionError, match=reason):
        load_source_state_dict(str(src))
    assert main([str(src), str(dst), '--config', config_path(LITE)],
                convert_centermask2, 'centermask2') == 1
    err = capsys.readouterr().err
    assert str(src) in err and reason in err
    assert not dst.exists()


def test_missing_source_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='nothing.pth'):
        load_source_state_dict(str(tmp_path / 'nothing.pth'))
