"""tools/analysis_tools/benchmark_panoptic.py: MMDetection's Panoptic FPN of
the Panoptic-CenterMask-Lite recipe, and one short run of the whole
comparison on a tiny panoptic set (train, evaluate PQ, time inference,
summarise)."""
import json
import subprocess
import sys

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.config import Config
from repo_paths import REPO_ROOT

from mmcentermask.datasets import make_panoptic_split
from mmcentermask.utils.benchmark import panoptic_fpn_recipe_cfg

TOOL = f'{REPO_ROOT}/tools/analysis_tools/benchmark_panoptic.py'
PANOPTIC_CONFIG = (
    f'{REPO_ROOT}/configs/centermask-panoptic/panoptic-centermask-lite_'
    'vovnet-v2-19-slim-dw_fpn-64_1xb8-1600i_shapes.py')


def test_panoptic_fpn_has_the_panoptic_centermask_recipe():
    centermask = Config.fromfile(PANOPTIC_CONFIG)
    cfg = panoptic_fpn_recipe_cfg(centermask)
    assert cfg.model.type == 'PanopticFPN'
    # the panoptic config already feeds C2-C5 to its FPN: kept as it is
    assert cfg.model.backbone.out_indices == (0, 1, 2, 3)
    for key in ('train_dataloader', 'val_dataloader', 'val_evaluator',
                'optim_wrapper', 'param_scheduler', 'train_cfg'):
        assert cfg[key] == centermask[key], key
    assert 'PanopticNumClassCheckHook' not in [
        hook['type'] for hook in cfg.custom_hooks
    ]
    assert cfg.model.test_cfg.panoptic.stuff_area_limit == 160
    register_all_modules()
    model = MODELS.build(cfg.model)
    width = centermask.model.neck.out_channels
    assert model.neck.out_channels == width
    assert model.roi_head.mask_head.conv_out_channels == width
    assert (model.num_things_classes, model.num_stuff_classes) == (3, 3)
    # stuff classes + one "things" class, predicted at stride 4
    model.eval()
    with torch.no_grad():
        feats = model.extract_feat(torch.zeros(1, 3, 64, 96))
        seg = model.semantic_head(feats)['seg_preds']
    assert tuple(seg.shape) == (1, 4, 16, 24)


@pytest.mark.slow
def test_short_comparison_runs_end_to_end(tmp_path):
    root = tmp_path / 'shapes_panoptic'
    for split, count, seed in (('train', 4, 1), ('val', 3, 2)):
        make_panoptic_split(
            str(root),
            split,
            count,
            seed=seed,
            size_range=(64, 96),
            max_shapes=3,
            empty_every=0)
    work_dir = tmp_path / 'bench'
    command = [
        sys.executable, TOOL, '--seeds', '0', '--iters', '2', '--data-root',
        str(root), '--work-dir',
        str(work_dir), '--infer-images', '1', '--threads', '1'
    ]
    proc = subprocess.run(
        command, capture_output=True, text=True, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((work_dir / 'summary.json').read_text())
    assert [r['model'] for r in summary['runs']
            ] == ['panoptic-centermask-lite', 'panoptic-fpn']
    for run in summary['runs']:
        assert run['train_s_per_iter'] > 0
        assert run['train_minutes'] > 0
        assert run['infer_s_per_image'] > 0
        assert not run['detected_nothing']
        for key in ('PQ', 'SQ', 'RQ', 'PQ_th', 'PQ_st'):
            assert 0 <= run[key] <= 100, key
    config = Config.fromfile(work_dir / 'panoptic-fpn' / 'seed-0' /
                             'config.py')
    assert config.model.type == 'PanopticFPN'
    assert config.val_evaluator.seg_prefix == \
        f'{root}/annotations/panoptic_val/'
    assert '| panoptic-fpn | 0 |' in proc.stdout


def test_a_missing_dataset_is_named_with_the_fix(tmp_path):
    missing = tmp_path / 'no_such_set'
    proc = subprocess.run([sys.executable, TOOL, '--data-root',
                           str(missing)],
                          capture_output=True,
                          text=True,
                          cwd=REPO_ROOT)
    assert proc.returncode != 0
    assert f'no panoptic shapes dataset at {missing}' in proc.stderr
    assert 'make_shapes_dataset.py --panoptic' in proc.stderr
    assert not (tmp_path / 'work_dirs').exists()
