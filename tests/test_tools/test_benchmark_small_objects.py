"""tools/analysis_tools/benchmark_small_objects.py: the Mask R-CNN of the
same recipe, and one short run of the whole comparison (train, evaluate,
time inference, summarise, reuse finished runs)."""
import importlib.util
import json
import subprocess
import sys

import pytest
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.config import Config
from repo_paths import REPO_ROOT

import mmcentermask  # noqa: F401  (registration)
from mmcentermask.utils.benchmark import mask_rcnn_recipe_cfg

TOOL = f'{REPO_ROOT}/tools/analysis_tools/benchmark_small_objects.py'


@pytest.fixture(scope='module')
def tool():
    spec = importlib.util.spec_from_file_location('benchmark_small_objects',
                                                  TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mask_rcnn_has_the_centermask_recipe(tool):
    centermask = Config.fromfile(tool.SHAPES_CONFIG)
    cfg = mask_rcnn_recipe_cfg(centermask)
    assert cfg.model.type == 'MaskRCNN'
    assert cfg.model.backbone.out_indices == (0, 1, 2, 3)
    for key in ('train_dataloader', 'val_dataloader', 'optim_wrapper',
                'param_scheduler', 'train_cfg', 'randomness'):
        assert cfg[key] == centermask[key], key
    assert 'tta_model' not in cfg
    sampler = cfg.model.train_cfg.rcnn.sampler
    assert (sampler.num, sampler.pos_fraction) == (32, 0.25)  # 8 positives
    register_all_modules()
    model = MODELS.build(cfg.model)
    width = centermask.model.neck.out_channels
    assert model.neck.out_channels == width
    assert model.rpn_head.feat_channels == width
    assert model.roi_head.bbox_head.in_channels == width
    assert model.roi_head.mask_head.conv_out_channels == width
    assert len(model.roi_head.mask_head.convs) == 4
    assert model.roi_head.bbox_head.num_classes == 3


@pytest.mark.slow
def test_short_comparison_runs_end_to_end(tiny_coco, tmp_path):
    work_dir = tmp_path / 'bench'
    command = [
        sys.executable, TOOL, '--seeds', '0', '--models',
        'centermask-lite-p2', 'mask-rcnn', '--iters', '2', '--data-root',
        str(tiny_coco), '--work-dir',
        str(work_dir), '--infer-images', '1', '--threads', '1'
    ]
    first = subprocess.run(
        command, capture_output=True, text=True, cwd=REPO_ROOT)
    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads((work_dir / 'summary.json').read_text())
    assert [r['model'] for r in summary['runs']] == [
        'centermask-lite-p2', 'mask-rcnn'
    ]
    for run in summary['runs']:
        assert run['train_s_per_iter'] > 0
        assert run['infer_s_per_image'] > 0
        assert 0 <= run['segm_mAP'] <= 1
    config = Config.fromfile(work_dir / 'mask-rcnn' / 'seed-0' / 'config.py')
    assert config.model.type == 'MaskRCNN' and config.randomness.seed == 0
    assert '| centermask-lite-p2 | 0 |' in first.stdout
    assert '| mask-rcnn | 0 |' in first.stdout
    # finished runs are read back, not trained again
    again = subprocess.run(
        command, capture_output=True, text=True, cwd=REPO_ROOT)
    assert again.returncode == 0, again.stderr[-3000:]
    assert 'Iter(train)' not in again.stdout + again.stderr
