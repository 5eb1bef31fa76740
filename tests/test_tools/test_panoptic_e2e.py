"""End to end on a tiny panoptic shapes set: tools/train.py trains the
Panoptic-CenterMask-Lite shapes config for 2 iterations, tools/test.py
prints PQ, through the plugin's loader and metric (no panopticapi), and
tools/demo.py draws and writes the panoptic predictions."""
import os
import pickle
import subprocess
import sys

import pytest

from repo_paths import REPO_ROOT
from mmcentermask.datasets import make_panoptic_split

QUICK_START = os.path.join(
    REPO_ROOT, 'configs/centermask-panoptic/panoptic-centermask-lite_'
    'vovnet-v2-19-slim-dw_fpn-64_1xb8-1600i_shapes.py')

CONFIG = """
_base_ = {base!r}
data_root = {data_root!r} + '/'
model = dict(
    neck=dict(out_channels=32),
    bbox_head=dict(in_channels=32, feat_channels=32,
                   norm_cfg=dict(type='GN', num_groups=8)),
    roi_head=dict(
        mask_roi_extractor=dict(out_channels=32),
        mask_head=dict(in_channels=32, conv_out_channels=32),
        mask_iou_head=dict(in_channels=32, conv_out_channels=32,
                           fc_out_channels=64)),
    semantic_head=dict(in_channels=32, inner_channels=32,
                       norm_cfg=dict(type='GN', num_groups=8)),
    # every detection reaches the fusion, so the panoptic map has things
    test_cfg=dict(fcos=dict(score_thr=0.0), panoptic=dict(score_thr=0.0)))
train_pipeline = _base_.train_pipeline
train_pipeline[2] = dict(type='Resize', scale=(96, 64), keep_ratio=True)
test_pipeline = _base_.test_pipeline
test_pipeline[1] = dict(type='Resize', scale=(96, 64), keep_ratio=True)
loader = dict(batch_size=2, num_workers=0, persistent_workers=False)
train_dataloader = dict(**loader, dataset=dict(data_root=data_root,
                                               pipeline=train_pipeline))
val_dataloader = dict(**loader, dataset=dict(data_root=data_root,
                                             pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    ann_file=data_root + 'annotations/panoptic_val.json',
    seg_prefix=data_root + 'annotations/panoptic_val/')
test_evaluator = val_evaluator
train_cfg = dict(max_iters=2, val_interval=3)  # tools/test.py evaluates
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False,
                        begin=0, end=2)]
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=2, max_keep_ckpts=-1))
"""
PQ_KEYS = [
    f'coco_panoptic/{k}{s}' for k in ('PQ', 'SQ', 'RQ')
    for s in ('', '_th', '_st')
]


def run(*cmd):
    env = {
        k: v
        for k, v in os.environ.items()
        if k != 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'
    }
    proc = subprocess.run(
        list(cmd),
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_train_test_prints_pq(tmp_path):
    root = tmp_path / 'shapes_panoptic'
    make_panoptic_split(
        str(root),
        'train',
        4,
        seed=1,
        size_range=(64, 96),
        max_shapes=3,
        empty_every=0)
    make_panoptic_split(
        str(root),
        'val',
        2,
        seed=2,
        size_range=(64, 96),
        max_shapes=3,
        empty_every=0)
    config = tmp_path / 'tiny_panoptic.py'
    config.write_text(CONFIG.format(base=QUICK_START, data_root=str(root)))
    work_dir = tmp_path / 'work'

    out = run(sys.executable, 'tools/train.py', str(config), '--work-dir',
              str(work_dir))
    for key in ('loss_cls', 'loss_mask', 'loss_mask_iou', 'loss_seg'):
        assert key in out, key

    results = tmp_path / 'results.pkl'
    out = run(sys.executable, 'tools/test.py', str(config),
              str(work_dir / 'iter_2.pth'), '--out', str(results),
              '--work-dir', str(tmp_path / 'test'))
    assert 'Panoptic Evaluation Results' in out
    assert 'Classwise Panoptic Evaluation Results' in out
    for key in PQ_KEYS:
        assert f'{key}: ' in out, key
    with open(results, 'rb') as f:
        predictions = pickle.load(f)
    assert len(predictions) == 2
    for prediction in predictions:
        panoptic = prediction['pred_panoptic_seg']['sem_seg']
        assert tuple(panoptic.shape[1:]) == tuple(prediction['ori_shape'])

    demo = tmp_path / 'demo'
    out = run(sys.executable, 'tools/demo.py', str(root / 'val'), str(config),
              str(work_dir / 'iter_2.pth'), '--out-dir', str(demo))
    assert '2 pictures written' in out
    for name in ('val_0000.png', 'val_0001.png'):
        assert (demo / 'vis' / name).is_file(), name
    assert len(list((demo / 'panoptic').glob('*.png'))) == 2


@pytest.mark.slow
def test_make_shapes_dataset_panoptic(tmp_path):
    out = run(sys.executable,
              'tools/dataset_converters/make_shapes_dataset.py', '--panoptic',
              '--out', str(tmp_path), '--num-train', '2', '--num-val', '1')
    assert 'train: 2 images' in out and 'val: 1 images' in out
    for name in ('annotations/panoptic_train.json',
                 'annotations/panoptic_val/val_0000.png',
                 'train/train_0001.png'):
        assert (tmp_path / name).is_file(), name
