"""End to end on a tiny shapes set: train -> test -> demo, 2-process CPU
training, and --resume after a killed run (all through tools/)."""
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch

from repo_paths import REPO_ROOT
from detector_utils import TINY_MODEL_LINES

QUICK_START = os.path.join(
    REPO_ROOT, 'configs/centermask/'
    'centermask-lite_vovnet-v2-19-slim-dw_fpn-64_1xb8-1600i_shapes.py')

CONFIG = """
_base_ = {base!r}
data_root = {data_root!r} + '/'
{tiny_model}train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True,
         poly2mask=False),
    dict(type='Resize', scale=(96, 64), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(96, 64), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True,
         poly2mask=False),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape',
                                          'img_shape', 'scale_factor'))]
loader = dict(batch_size=2, num_workers=0, persistent_workers=False)
train_dataloader = dict(**loader, dataset=dict(data_root=data_root,
                                               pipeline=train_pipeline))
val_dataloader = dict(**loader, dataset=dict(data_root=data_root,
                                             pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/val.json')
test_evaluator = val_evaluator
train_cfg = dict(max_iters={iters}, val_interval={iters})
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False,
                        begin=0, end=2)]
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval={ckpt_interval},
                                     max_keep_ckpts=-1))
"""


def write_config(tmp_path, data_root, iters=2, ckpt_interval=2):
    path = tmp_path / 'tiny_centermask.py'
    path.write_text(
        CONFIG.format(
            tiny_model=TINY_MODEL_LINES,
            base=QUICK_START,
            data_root=str(data_root),
            iters=iters,
            ckpt_interval=ckpt_interval))
    return str(path)


def clean_env():
    return {k: v for k, v in os.environ.items()
            if k != 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'}


def run(*cmd, timeout=900):
    proc = subprocess.run(list(cmd), cwd=REPO_ROOT, env=clean_env(),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_train_test_demo(tiny_coco, tmp_path):
    config = write_config(tmp_path, tiny_coco)
    work_dir = tmp_path / 'work'
    out = run(sys.executable, 'tools/train.py', config, '--work-dir',
              str(work_dir))
    for key in ('loss_cls', 'loss_bbox', 'loss_centerness', 'loss_mask',
                'loss_mask_iou', 'coco/segm_mAP'):
        assert key in out, key
    ckpt = work_dir / 'iter_2.pth'

    results = tmp_path / 'results.pkl'
    out = run(sys.executable, 'tools/test.py', config, str(ckpt), '--out',
              str(results), '--work-dir', str(tmp_path / 'test'))
    assert 'coco/bbox_mAP' in out and 'coco/segm_mAP' in out
    with open(results, 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 3
    for pred in preds:
        inst = pred['pred_instances']
        assert set(inst) >= {'bboxes', 'scores', 'labels', 'masks',
                             'mask_scores'}
        assert len(inst['masks']) == len(inst['bboxes']) > 0

    tta_results = tmp_path / 'results_tta.pkl'
    out = run(sys.executable, 'tools/test.py', config, str(ckpt), '--tta',
              '--out', str(tta_results), '--work-dir', str(tmp_path / 'tta'))
    assert 'coco/segm_mAP' in out
    with open(tta_results, 'rb') as f:
        tta_preds = pickle.load(f)
    for pred, tta_pred in zip(preds, tta_preds):
        inst = tta_pred['pred_instances']
        assert len(inst['masks']) == len(inst['bboxes']) > 0
        # masks come RLE-encoded, each of the original image size
        assert inst['masks'][0]['size'] == pred['pred_instances']['masks'][
            0]['size']

    out = run(sys.executable, 'tools/demo.py', str(tiny_coco / 'val'),
              config, str(ckpt), '--out-dir', str(tmp_path / 'demo'),
              '--score-thr', '0.0')
    pictures = sorted(os.listdir(tmp_path / 'demo' / 'vis'))
    assert pictures == sorted(os.listdir(tiny_coco / 'val'))


@pytest.mark.slow
def test_two_process_training(tiny_coco, tmp_path):
    config = write_config(tmp_path, tiny_coco)
    work_dir = tmp_path / 'dist'
    env = dict(PORT=str(29500 + os.getpid() % 1000))
    proc = subprocess.run(
        ['bash', 'tools/dist_train.sh', config, '2', '--work-dir',
         str(work_dir)], cwd=REPO_ROOT, env={**clean_env(), **env,
         'PATH': os.path.dirname(sys.executable) + ':' + os.environ['PATH']},
        capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    log = proc.stdout + proc.stderr
    assert "dist_cfg: {'backend': 'gloo'}" in log
    assert 'Distributed training: True' in log
    assert 'GPU number: 2' in log  # mmengine's name for the world size
    out = run(sys.executable, 'tools/test.py', config,
              str(work_dir / 'iter_2.pth'), '--work-dir',
              str(tmp_path / 'dist_test'))
    assert 'coco/segm_mAP' in out


@pytest.mark.slow
def test_resume_after_kill(tiny_coco, tmp_path):
    config = write_config(tmp_path, tiny_coco, iters=12, ckpt_interval=2)
    work_dir = tmp_path / 'resume'
    cmd = [sys.executable, 'tools/train.py', config, '--work-dir',
           str(work_dir)]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=clean_env(),
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    last = work_dir / 'last_checkpoint'  # written after a checkpoint is complete
    while not last.exists():
        assert proc.poll() is None, 'training ended before it was killed'
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpt = last.read_text().strip()
    killed_at = torch.load(ckpt, weights_only=False)['meta']['iter']
    assert 2 <= killed_at < 12
    assert not (work_dir / 'iter_12.pth').exists()

    out = run(*cmd, '--resume')
    assert f'resumed epoch: 0, iter: {killed_at}' in out
    final = torch.load(work_dir / 'iter_12.pth', weights_only=False)
    assert final['meta']['iter'] == 12
    assert 'optimizer' in final and final['optimizer']['state']
