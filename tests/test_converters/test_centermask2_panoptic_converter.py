"""Panoptic-CenterMask checkpoints of centermask2: the semantic-head key
table, the predictor's class order, every key accounted for, and the
errors for a checkpoint that does not fit the config."""
import doctest
import json

import pytest
import torch
from checkpoint_layouts import (c2_detector_layout, c2_vovnet_layout,
                                materialise, vovnet_out_channels)
from golden_utils import REPO_ROOT, golden_dir
from mmengine.config import Config

from mmcentermask.converters import (COCO_CLASSES, ConversionError,
                                     build_target_model, convert_centermask2)
from mmcentermask.converters.cli import convert_checkpoint_file
from mmcentermask.converters.key_tables import semantic_head
from mmcentermask.converters.key_tables.semantic_head import (
    centermask2_semantic_head_key_to_mmdet, things_row_last)
from panoptic_utils import (STAGE2_CHANNELS, c2_fpn_p2_layout,
                            c2_semantic_head_layout, panoptic_cfg)

LITE = (
    REPO_ROOT / 'configs/centermask/'
    'centermask-lite_vovnet-v2-19-slim-dw_fpn_ms-4x_coco.py')
NUM_SEMANTIC = 54  # 53 stuff + "things"


@pytest.mark.parametrize('key, expected', [
    ('p2.0.weight', 'conv_upsample_layers.0.conv.0.conv.weight'),
    ('p3.0.norm.weight', 'conv_upsample_layers.1.conv.0.gn.weight'),
    ('p4.2.norm.bias', 'conv_upsample_layers.2.conv.1.gn.bias'),
    ('p5.4.weight', 'conv_upsample_layers.3.conv.2.conv.weight'),
    ('p5.4.bias', 'conv_upsample_layers.3.conv.2.conv.bias'),
    ('predictor.bias', 'conv_logits.bias'),
])
def test_semantic_head_keys(key, expected):
    assert centermask2_semantic_head_key_to_mmdet(key) == expected


@pytest.mark.parametrize(
    'key',
    [
        'p4.1.weight',  # an upsampling position: no parameters
        'p1.0.weight',  # below the first level
        'p3.0.norm.running_mean',
        'predictor.scale',
    ])
def test_semantic_head_rejects(key):
    with pytest.raises(KeyError):
        centermask2_semantic_head_key_to_mmdet(key)


def test_predictor_rows_things_last():
    rows = torch.arange(NUM_SEMANTIC, dtype=torch.float32)[:, None]
    moved = things_row_last(rows)
    assert moved[-1].item() == 0  # detectron2's "things"
    assert moved[:-1, 0].tolist() == list(range(1, NUM_SEMANTIC))


def test_module_doctests():
    failures, tried = doctest.testmod(semantic_head)
    assert failures == 0 and tried > 0


# --------------------------------------------------------------------------
# whole checkpoints: a Lite-V-19-slim-dw Panoptic-CenterMask
# --------------------------------------------------------------------------


@pytest.fixture(scope='module')
def lite_panoptic_cfg():
    cfg = Config.fromfile(str(LITE))
    cfg.model = panoptic_cfg(cfg.model, STAGE2_CHANNELS, 128, 128, 32,
                             NUM_SEMANTIC - 1)
    return cfg


@pytest.fixture(scope='module')
def lite_panoptic_target(lite_panoptic_cfg):
    return build_target_model(lite_panoptic_cfg).state_dict()


@pytest.fixture(scope='module')
def lite_panoptic_source():
    layout = c2_detector_layout(
        c2_vovnet_layout('V-19-slim-dw'), vovnet_out_channels('V-19-slim-dw'),
        128, 2)
    layout.update(c2_fpn_p2_layout(STAGE2_CHANNELS, 128))
    layout.update(c2_semantic_head_layout(128, 128, NUM_SEMANTIC))
    return materialise(layout)


def test_every_key_converts_once(lite_panoptic_cfg, lite_panoptic_target,
                                 lite_panoptic_source):
    source = lite_panoptic_source
    result = convert_centermask2(
        source, lite_panoptic_cfg, target=lite_panoptic_target)
    assert result.num_converted == len(source)
    assert result.per_part['semantic_head'] == 23
    assert result.per_part['fpn'] == 20
    assert result.dropped == []
    assert any('things' in note for note in result.notes)
    model = build_target_model(lite_panoptic_cfg)
    model.load_state_dict(result.state_dict, strict=True)
    # materialise fills tensor i with i + 0.5: each target tells its source
    markers = {float(v.reshape(-1)[0]): k for k, v in source.items()}
    expected = {
        'neck.lateral_convs.0.conv.weight':
        'backbone.fpn_lateral2.weight',
        'neck.fpn_convs.0.conv.bias':
        'backbone.fpn_output2.bias',
        'neck.lateral_convs.1.conv.weight':
        'backbone.fpn_lateral3.weight',
        'neck.fpn_convs.4.conv.weight':
        'backbone.top_block.p6.weight',
        'neck.fpn_convs.5.conv.bias':
        'backbone.top_block.p7.bias',
        'semantic_head.conv_upsample_layers.3.conv.2.gn.weight':
        'sem_seg_head.p5.4.norm.weight',
    }
    for ours, theirs in expected.items():
        assert markers[float(result.state_dict[ours].reshape(-1)[0])] == theirs


def test_instance_checkpoint_for_panoptic_config_is_named(
        lite_panoptic_cfg, lite_panoptic_target, lite_panoptic_source):
    source = {
        k: v
        for k, v in lite_panoptic_source.items()
        if not k.startswith('sem_seg_head.')
    }
    with pytest.raises(ConversionError, match='no sem_seg_head'):
        convert_centermask2(
            source, lite_panoptic_cfg, target=lite_panoptic_target)


def test_panoptic_checkpoint_for_instance_config_is_named(
        lite_panoptic_source):
    with pytest.raises(ConversionError, match='configs/centermask-panoptic'):
        convert_centermask2(dict(lite_panoptic_source), str(LITE))


def test_partial_panoptic_checkpoint_lists_the_missing_keys(
        lite_panoptic_cfg, lite_panoptic_target, lite_panoptic_source):
    source = dict(lite_panoptic_source)
    del source['sem_seg_head.p4.2.norm.bias']
    del source['backbone.fpn_output2.weight']
    with pytest.raises(ConversionError) as err:
        convert_centermask2(
            source, lite_panoptic_cfg, target=lite_panoptic_target)
    message = str(err.value)
    assert '2 target keys not filled' in message
    assert 'semantic_head.conv_upsample_layers.2.conv.1.gn.bias' in message
    assert 'neck.fpn_convs.0.conv.weight' in message


def test_other_stuff_count_is_a_shape_mismatch(lite_panoptic_source):
    cfg = Config.fromfile(str(LITE))
    cfg.model = panoptic_cfg(cfg.model, STAGE2_CHANNELS, 128, 128, 32, 10)
    with pytest.raises(ConversionError, match='sem_seg_head.predictor'):
        convert_centermask2(dict(lite_panoptic_source), cfg)


def test_golden_manifest_layout():
    """The real key names and shapes of centermask2's panoptic V-39 (the
    golden manifest) agree with the generators used above."""
    manifest = json.loads(
        (golden_dir() / 'panoptic_v39' / 'manifest.json').read_text())
    layout = {e['key']: tuple(e['shape']) for e in manifest}
    expected = c2_detector_layout(
        c2_vovnet_layout('V-39'), vovnet_out_channels('V-39'), 256, 4)
    expected.update(c2_fpn_p2_layout(256, 256))
    expected.update(c2_semantic_head_layout(256, 128, NUM_SEMANTIC))
    assert layout == dict(expected)


def test_checkpoint_names_things_and_stuff(tmp_path, lite_panoptic_cfg,
                                           lite_panoptic_source):
    source = tmp_path / 'panoptic_c2.pth'
    torch.save({'model': lite_panoptic_source}, source)
    dst = tmp_path / 'panoptic_ours.pth'
    convert_checkpoint_file(
        str(source), str(dst), lite_panoptic_cfg, convert_centermask2)
    meta = torch.load(dst, weights_only=False)['meta']['dataset_meta']
    assert meta['thing_classes'] == COCO_CLASSES
    assert len(meta['stuff_classes']) == NUM_SEMANTIC - 1
    assert meta['classes'] == meta['thing_classes'] + meta['stuff_classes']
