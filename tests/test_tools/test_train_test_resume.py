"""tools/train.py, tools/test.py and --resume on a config that only adds
``custom_imports=['mmcentermask']``, with no environment variable set."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from repo_paths import REPO_ROOT

CONFIG = """
_base_ = ['mmdet::_base_/datasets/coco_instance.py',
          'mmdet::_base_/schedules/schedule_1x.py',
          'mmdet::_base_/default_runtime.py']
custom_imports = dict(imports=['mmcentermask'], allow_failed_imports=False)
data_root = {data_root!r}
metainfo = dict(classes=('circle', 'rectangle', 'triangle'))
model = dict(
    type='FCOS',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[0., 0., 0.],
                           std=[255., 255., 255.], pad_size_divisor=32),
    backbone=dict(type='ResNet', depth=18, base_channels=8,
                  out_indices=(1, 2, 3), norm_cfg=dict(type='BN'),
                  init_cfg=None),
    neck=dict(type='FPN', in_channels=[16, 32, 64], out_channels=16,
              start_level=0, add_extra_convs='on_output', num_outs=5,
              relu_before_extra_convs=True),
    bbox_head=dict(type='FCOSHead', num_classes=3, in_channels=16,
                   feat_channels=16, stacked_convs=1,
                   strides=[8, 16, 32, 64, 128],
                   norm_cfg=dict(type='GN', num_groups=4)),
    test_cfg=dict(nms_pre=100, min_bbox_size=0, score_thr=0.0,
                  nms=dict(type='nms', iou_threshold=0.5), max_per_img=10))
pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(96, 96), keep_ratio=True),
    dict(type='PackDetInputs')]
loader = dict(batch_size=2, num_workers=0, persistent_workers=False)
train_dataloader = dict(**loader, dataset=dict(
    data_root=data_root, metainfo=metainfo, pipeline=pipeline,
    ann_file='annotations/train.json', data_prefix=dict(img='train/')))
val_dataloader = dict(**loader, dataset=dict(
    data_root=data_root, metainfo=metainfo, pipeline=pipeline,
    ann_file='annotations/val.json', data_prefix=dict(img='val/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + '/annotations/val.json',
                     metric='bbox')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=1)
optim_wrapper = dict(optimizer=dict(lr=0.001))
param_scheduler = []
default_hooks = dict(logger=dict(interval=1))
"""


def run_tool(*args):
    env = {k: v for k, v in os.environ.items()
           if k != 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'}
    proc = subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_train_test_resume(tiny_coco, tmp_path):
    config = tmp_path / 'tiny_fcos.py'
    config.write_text(CONFIG.format(data_root=str(tiny_coco)))
    work_dir = tmp_path / 'work'
    run_tool('tools/train.py', str(config), '--work-dir', str(work_dir))
    ckpt = work_dir / 'epoch_1.pth'
    assert ckpt.exists()

    out = run_tool('tools/test.py', str(config), str(ckpt), '--work-dir',
                   str(tmp_path / 'test'))
    assert 'coco/bbox_mAP' in out
    assert 'Load checkpoint from' in out

    out = run_tool('tools/train.py', str(config), '--work-dir',
                   str(work_dir), '--resume', '--cfg-options',
                   'train_cfg.max_epochs=2')
    assert 'resumed epoch: 1' in out
    first = torch.load(ckpt, weights_only=False)['meta']
    second = torch.load(work_dir / 'epoch_2.pth', weights_only=False)['meta']
    assert (first['epoch'], second['epoch']) == (1, 2)
    assert second['iter'] == 2 * first['iter'] > 0
    assert osp.basename(
        (work_dir / 'last_checkpoint').read_text().strip()) == 'epoch_2.pth'
