"""tools/train.py on a tiny CenterMask: kill -9 after a few iterations,
--resume, and the five losses of every later iteration equal an uninterrupted
run's, bit for bit.
A killed process in a 2-process run ends the whole run instead of hanging."""
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest

from repo_paths import REPO_ROOT
from loss_log_hook import read

HERE = osp.dirname(osp.abspath(__file__))
QUICK_START = osp.join(
    REPO_ROOT, 'configs/centermask/'
    'centermask-lite_vovnet-v2-19-slim-dw_fpn-64_1xb8-1600i_shapes.py')
CONFIG = """
_base_ = {base!r}
custom_imports = dict(imports=['mmcentermask', 'loss_log_hook'],
                      allow_failed_imports=False)
data_root = {data_root!r} + '/'
model = dict(
    channels_last=False,
    neck=dict(out_channels=32),
    bbox_head=dict(in_channels=32, feat_channels=32,
                   norm_cfg=dict(type='GN', num_groups=8)),
    roi_head=dict(
        mask_roi_extractor=dict(out_channels=32),
        mask_head=dict(in_channels=32, conv_out_channels=32),
        mask_iou_head=dict(in_channels=32, conv_out_channels=32,
                           fc_out_channels=64)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True,
    poly2mask=False), dict(type='Resize', scale=(96, 64), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5), dict(type='PackDetInputs')]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root,
                        pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/val.json')
test_evaluator = val_evaluator
train_cfg = dict(max_iters={iters}, val_interval=1000)
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False,
                        begin=0, end=4)]
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=1, max_keep_ckpts=1))
custom_hooks = [dict(type='NumClassCheckHook'), dict(type='NonFiniteLossHook'),
                dict(type='RawLossLogHook', path={log!r})]
"""


def env():
    e = {
        k: v
        for k, v in os.environ.items()
        if k != 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'
    }
    e['PYTHONPATH'] = HERE + os.pathsep + e.get('PYTHONPATH', '')
    e['OMP_NUM_THREADS'] = '1'
    return e


def write_config(tmp_path, data_root, name, log, iters=6):
    path = tmp_path / f'{name}.py'
    path.write_text(
        CONFIG.format(
            base=QUICK_START,
            data_root=str(data_root),
            iters=iters,
            log=str(log)))
    return str(path)


def train(config, work_dir, *extra):
    return subprocess.Popen([
        sys.executable, 'tools/train.py', config, '--work-dir',
        str(work_dir), *extra
    ],
                            cwd=REPO_ROOT,
                            env=env(),
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT,
                            text=True)


@pytest.mark.slow
def test_kill_and_resume_gives_the_uninterrupted_losses(tiny_coco, tmp_path):
    ref_log = tmp_path / 'reference.txt'
    proc = train(
        write_config(tmp_path, tiny_coco, 'ref', ref_log), tmp_path / 'ref')
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-4000:]
    reference = read(ref_log)
    assert sorted(reference) == list(range(1, 7))
    assert all('loss_mask_iou=' in v[0] for v in reference.values())

    log = tmp_path / 'killed.txt'
    config = write_config(tmp_path, tiny_coco, 'run', log)
    work = tmp_path / 'run'
    proc = train(config, work)
    deadline = time.monotonic() + 600
    while len(read(log)) < 3:  # killed in or after iteration 3
        assert proc.poll() is None, proc.stdout.read()[-4000:]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    last = (work / 'last_checkpoint').read_text().strip()
    assert osp.isfile(last)
    proc = train(config, work, '--resume')
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-4000:]
    assert 'Restored the random number generator state of iteration' in out
    logged = read(log)
    assert sorted(logged) == list(range(1, 7))
    resumed_from = int(osp.basename(last)[len('iter_'):-len('.pth')])
    assert any(len(logged[i]) == 1 for i in range(resumed_from + 1, 7))
    for i, values in logged.items():  # killed run, then the resumed one
        assert set(values) == set(reference[i]), (i, values, reference[i])


@pytest.mark.slow
def test_killed_process_ends_a_two_process_run(tiny_coco, tmp_path):
    log = tmp_path / 'dist.txt'
    config = write_config(tmp_path, tiny_coco, 'dist', log, iters=400)
    port = str(29500 + os.getpid() % 1000)
    proc = subprocess.Popen(
        [
            'bash', 'tools/dist_train.sh', config, '2', '--work-dir',
            str(tmp_path / 'w')
        ],
        cwd=REPO_ROOT,
        env={
            **env(), 'PORT': port,
            'PATH': osp.dirname(sys.executable) + ':' + os.environ['PATH']
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while len(read(log)) < 2:
            assert proc.poll() is None, proc.stdout.read()[-4000:]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # the second worker: a child of torchrun running train.py, not rank 0's
        children = subprocess.run(['pgrep', '-P', str(proc.pid)],
                                  capture_output=True,
                                  text=True).stdout.split()
        torchrun = children[0]
        workers = subprocess.run(['pgrep', '-P', torchrun],
                                 capture_output=True,
                                 text=True).stdout.split()
        assert len(workers) == 2, workers
        os.kill(int(max(workers, key=int)), signal.SIGKILL)
        start = time.monotonic()
        out, _ = proc.communicate(timeout=180)  # no hang: the run ends
        assert proc.returncode != 0
        assert time.monotonic() - start < 180
        killed = ('SIGKILL', 'Signal 9', 'exitcode  : -9')
        assert any(k in out for k in killed), out[-3000:]
        assert osp.isfile(
            (tmp_path / 'w' / 'last_checkpoint').read_text().strip())
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
