"""configs/vovnet: the mixing configs load through ``mmdet::`` bases, their FPN
matches the backbone, and a CPU-sized copy trains one step and predicts;
README and metafile point at real configs."""
import re
from pathlib import Path

import pytest
import torch
import yaml
from mmengine.config import Config

from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs

CONFIG_DIR = Path(__file__).resolve().parents[2] / 'configs' / 'vovnet'
FCOS_CONFIG = ('fcos_vovnet-v2-39_fpn_gn-head-center-normbbox-centeronreg-'
               'giou_1x_coco.py')
CONFIGS = {
    'mask-rcnn_vovnet-v2-39_fpn_ms-3x_coco.py': 'MaskRCNN',
    'faster-rcnn_vovnet-v2-39_fpn_ms-3x_coco.py': 'FasterRCNN',
    FCOS_CONFIG: 'FCOS',
}
SMALL = 32  # FPN / head channels of the CPU-sized copies (GN needs 32)


@pytest.fixture(autouse=True, scope='module')
def single_thread():
    """One intra-op thread (shared 2-core machine, tiny inputs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_every_config_is_tested():
    assert sorted(p.name for p in CONFIG_DIR.glob('*.py')) == sorted(CONFIGS)


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_config_as_released(name):
    cfg = Config.fromfile(str(CONFIG_DIR / name))
    assert cfg.custom_imports == dict(
        imports=['mmcentermask'], allow_failed_imports=False)
    model = cfg.model
    assert model.type == CONFIGS[name]
    assert model.data_preprocessor.mean == [103.53, 116.28, 123.675]
    assert model.data_preprocessor.std == [1.0, 1.0, 1.0]
    assert model.data_preprocessor.bgr_to_rgb is False
    assert model.data_preprocessor.pad_size_divisor == 32
    backbone_cfg = model.backbone
    assert backbone_cfg.type == 'VoVNet' and backbone_cfg.arch == 'V-39'
    assert backbone_cfg.init_cfg is None
    assert backbone_cfg.norm_cfg == dict(type='BN', requires_grad=False)
    assert backbone_cfg.norm_eval is True
    assert set(backbone_cfg) == {
        'type', 'arch', 'out_indices', 'frozen_stages', 'norm_cfg',
        'norm_eval', 'init_cfg'
    }, 'ResNet arguments leaked from the base config'
    backbone = MODELS.build(backbone_cfg)
    assert model.neck.in_channels == backbone.out_channels


def shrink(cfg: Config) -> dict:
    """The config's model with a V-19-slim-dw backbone and 32-channel
    FPN/heads."""
    model = cfg.model
    model.backbone.arch = 'V-19-slim-dw'
    model.neck.in_channels = MODELS.build(model.backbone).out_channels
    model.neck.out_channels = SMALL
    if model.type == 'FCOS':
        model.bbox_head.update(in_channels=SMALL, feat_channels=SMALL)
        return model
    model.rpn_head.update(in_channels=SMALL, feat_channels=SMALL)
    roi_head = model.roi_head
    roi_head.bbox_roi_extractor.out_channels = SMALL
    roi_head.bbox_head.update(in_channels=SMALL, fc_out_channels=SMALL)
    if 'mask_head' in roi_head:
        roi_head.mask_roi_extractor.out_channels = SMALL
        roi_head.mask_head.update(in_channels=SMALL, conv_out_channels=SMALL)
    return model


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_config_train_step_and_predict(name):
    torch.manual_seed(0)
    cfg = Config.fromfile(str(CONFIG_DIR / name))
    model = MODELS.build(shrink(cfg))
    model.init_weights()
    with_mask = 'mask_head' in cfg.model.get('roi_head', {})
    packed = demo_mm_inputs(
        batch_size=2,
        image_shapes=[(3, 64, 64), (3, 64, 96)],
        num_items=[2, 1],
        num_classes=80,
        with_mask=with_mask)

    model.train()
    data = model.data_preprocessor(packed, True)
    losses = model(**data, mode='loss')
    loss, log_vars = model.parse_losses(losses)
    assert torch.isfinite(loss), log_vars
    if with_mask:
        assert 'loss_mask' in log_vars
    loss.backward()
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)
    frozen_bn = [
        p for n, p in model.backbone.named_parameters() if '.norm.' in n
    ]
    assert frozen_bn and not any(p.requires_grad for p in frozen_bn)

    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(packed, False),
                        mode='predict')
    assert len(results) == 2
    for result in results:
        instances = result.pred_instances
        assert instances.bboxes.shape[1] == 4
        assert len(instances.scores) == len(instances.labels)
        if with_mask:
            assert 'masks' in instances


def test_readme_and_metafile_point_at_configs():
    metafile = yaml.safe_load((CONFIG_DIR / 'metafile.yml').read_text())
    names = [m['Name'] for m in metafile['Models']]
    assert sorted(names) == sorted(n[:-3] for n in CONFIGS)
    for entry in metafile['Models']:
        assert entry['Config'] == f'configs/vovnet/{entry["Name"]}.py'
        assert entry['In Collection'] == metafile['Collections'][0]['Name']
    readme = (CONFIG_DIR / 'README.md').read_text()
    linked = set(re.findall(r'\]\(\./([^)]+\.py)\)', readme))
    assert linked == set(CONFIGS)


def test_metafile_results_are_the_readme_numbers():
    """Every authors' number quoted in the metafile appears in the README
    row of its config."""
    metafile = yaml.safe_load((CONFIG_DIR / 'metafile.yml').read_text())
    readme = (CONFIG_DIR / 'README.md').read_text().splitlines()
    for entry in metafile['Models']:
        rows = [r for r in readme if f'](./{entry["Name"]}.py)' in r]
        assert len(rows) == 1, entry['Name']
        for result in entry.get('Results', []):
            for value in result['Metrics'].values():
                assert f'| {value} |' in rows[0], (entry['Name'], value)
