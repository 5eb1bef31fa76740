"""Every shipped config trains with the crash-safe checkpoint hook and the
non-finite loss stop and keeps freed CPU memory mapped; every CenterMask
config reads its data through CheckedCocoDataset."""
import glob
import os.path as osp

import pytest
from mmdet.registry import HOOKS
from mmdet.utils import register_all_modules
from mmengine.config import Config

import mmcentermask  # noqa: F401

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', '*', '*.py')))


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: osp.relpath(p, ROOT))
def test_config_enables_the_checks(path):
    register_all_modules()
    cfg = Config.fromfile(path)
    hook = HOOKS.build(cfg.default_hooks.checkpoint)
    assert type(hook).__name__ == 'CrashSafeCheckpointHook'
    custom_hooks = [h['type'] for h in cfg.custom_hooks]
    assert 'NonFiniteLossHook' in custom_hooks
    assert 'ReuseCPUMemoryHook' in custom_hooks
    if osp.basename(osp.dirname(path)) == 'centermask':
        assert cfg.train_dataloader.dataset.type == 'CheckedCocoDataset'
        assert cfg.val_dataloader.dataset.type == 'CheckedCocoDataset'
        assert cfg.test_dataloader.dataset.type == 'CheckedCocoDataset'


def test_every_config_directory_is_covered():
    assert len(CONFIGS) >= 20
