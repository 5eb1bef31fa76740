"""CrashSafeCheckpointHook: a crash at any moment leaves a resumable state, and
resuming gives the losses of an uninterrupted run."""
import os
import os.path as osp
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from mmengine.fileio.backends import LocalBackend

from mmcentermask.utils.checkpoint import load_local_checkpoint
from toy_train import build_runner, read_losses

HERE = osp.dirname(osp.abspath(__file__))


def last_checkpoint(work_dir):
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


def train(work_dir, log, iters, resume=False, hook='CrashSafeCheckpointHook'):
    torch.set_num_threads(1)
    build_runner(work_dir, log, iters, resume=resume, hook=hook).train()
    return read_losses(log)


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    """Losses of 8 uninterrupted iterations."""
    tmp = tmp_path_factory.mktemp('reference')
    losses = train(tmp / 'work', tmp / 'loss.txt', 8)
    assert sorted(losses) == list(range(1, 9))
    return {i: v[0] for i, v in losses.items()}


def test_resume_gives_the_losses_of_an_uninterrupted_run(reference, tmp_path):
    train(tmp_path / 'work', tmp_path / 'a.txt', 4)
    losses = train(tmp_path / 'work', tmp_path / 'b.txt', 8, resume=True)
    assert sorted(losses) == [5, 6, 7, 8]
    assert {
        i: v[0]
        for i, v in losses.items()
    } == {
        i: reference[i]
        for i in (5, 6, 7, 8)
    }


def test_stock_hook_resume_draws_other_random_numbers(reference, tmp_path):
    """Why the hook stores torch's generator: MMEngine re-seeds it."""
    train(tmp_path / 'work', tmp_path / 'a.txt', 4, hook='CheckpointHook')
    losses = train(
        tmp_path / 'work',
        tmp_path / 'b.txt',
        8,
        resume=True,
        hook='CheckpointHook')
    assert [losses[i][0]
            for i in (5, 6, 7, 8)] != [reference[i] for i in (5, 6, 7, 8)]


class Crash(Exception):
    pass


def crash_on_third_write(monkeypatch):
    """The third checkpoint write stops after half its bytes (a kill)."""
    put = LocalBackend.put
    count = {'writes': 0}

    def half_put(self, obj, filepath):
        if str(filepath).endswith('.pth') or str(filepath).endswith(
                '.pth.tmp'):
            count['writes'] += 1
            if count['writes'] == 3:
                with open(filepath, 'wb') as f:
                    f.write(obj[:len(obj) // 2])
                raise Crash(filepath)
        put(self, obj, filepath)

    monkeypatch.setattr(LocalBackend, 'put', half_put)


def test_crash_mid_save_leaves_the_previous_checkpoint(reference, tmp_path,
                                                       monkeypatch):
    work = tmp_path / 'work'
    crash_on_third_write(monkeypatch)
    with pytest.raises(Crash):
        train(work, tmp_path / 'a.txt', 8)
    monkeypatch.undo()
    ckpt = last_checkpoint(work)
    assert osp.basename(ckpt) == 'iter_2.pth'
    assert load_local_checkpoint(ckpt)['meta']['iter'] == 2
    assert (work / '.iter_3.pth.tmp').exists()  # the torn write, never renamed
    losses = train(work, tmp_path / 'b.txt', 8, resume=True)
    assert not (work / '.iter_3.pth.tmp').exists()
    assert {
        i: v[0]
        for i, v in losses.items()
    } == {
        i: reference[i]
        for i in range(3, 9)
    }
    assert sorted(os.listdir(work / '')) == sorted(
        [p for p in os.listdir(work) if not p.endswith('.tmp')])
    assert [p for p in os.listdir(work)
            if p.endswith('.pth')] == ['iter_8.pth']


def test_stock_hook_loses_every_checkpoint_on_the_same_crash(
        tmp_path, monkeypatch):
    """The MMEngine 0.10.7 behaviour this hook exists for."""
    work = tmp_path / 'work'
    crash_on_third_write(monkeypatch)
    with pytest.raises(Crash):
        train(work, tmp_path / 'a.txt', 8, hook='CheckpointHook')
    monkeypatch.undo()
    assert not (work / 'iter_2.pth').exists()
    with pytest.raises(Exception):
        load_local_checkpoint(str(work / 'iter_3.pth'))


def wait_for_lines(path, n, proc, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if osp.exists(path) and len(open(path).read().splitlines()) >= n:
            return True
        time.sleep(0.02)
    return False


@pytest.mark.slow
def test_kill_9_at_random_moments_never_loses_the_resumable_state(tmp_path):
    """Real SIGKILLs of a training process that saves a 16 MB checkpoint every
    iteration (max_keep_ckpts=1); 5 kills at seeded random moments, then
    --resume to the end. Every kill must leave last_checkpoint naming a
    complete checkpoint, and
    every logged loss must equal the uninterrupted run's."""
    script = osp.join(HERE, 'toy_train.py')
    iters, ballast = 100, 4_000_000
    env = dict(os.environ, OMP_NUM_THREADS='1')

    def start(work, log, resume):
        cmd = [
            sys.executable, script,
            str(work),
            str(log),
            str(iters), '--ballast',
            str(ballast)
        ] + (['--resume'] if resume else [])
        return subprocess.Popen(
            cmd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True)

    ref_log = tmp_path / 'reference.txt'
    proc = start(tmp_path / 'reference', ref_log, False)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()[-3000:]
    reference = {i: v[0] for i, v in read_losses(ref_log).items()}
    assert sorted(reference) == list(range(1, iters + 1))

    rng = random.Random(0)
    work = tmp_path / 'work'
    logs, mid_save, before_first_save = [], 0, 0
    for k in range(5):
        log = tmp_path / f'run{k}.txt'
        logs.append(log)
        proc = start(work, log, resume=k > 0)
        # Kill once this process trains (its first loss is logged), a random
        # 0-1.5 s later: within the next few iterations, mostly during a save.
        if not wait_for_lines(log, 1, proc, timeout=300):
            # a run killed after its last iteration leaves nothing to do
            assert proc.wait(timeout=60) == 0, proc.stderr.read()[-3000:]
            break
        time.sleep(rng.uniform(0.0, 1.5))
        if proc.poll() is not None:
            break  # reached the end before the kill
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        # a torn .iter_N.pth.tmp left behind: this kill hit a save
        mid_save += any(p.endswith('.pth.tmp') for p in os.listdir(work))
        if not (work / 'last_checkpoint').exists():
            # killed before the first save completed: nothing to lose yet
            assert not [p for p in os.listdir(work) if p.endswith('.pth')]
            before_first_save += 1
            continue
        ckpt = last_checkpoint(work)
        state = load_local_checkpoint(ckpt)  # complete and loadable
        assert osp.basename(ckpt) == f'iter_{state["meta"]["iter"]}.pth'
        assert state['meta']['iter'] >= 1
    log = tmp_path / 'final.txt'
    logs.append(log)
    proc = start(work, log, resume=True)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()[-3000:]
    assert load_local_checkpoint(
        last_checkpoint(work))['meta']['iter'] == iters
    seen = set()
    for path in logs:
        for i, values in read_losses(path).items():
            assert values == [reference[i]] * len(values), (path, i)
            seen.add(i)
    assert seen == set(range(1, iters + 1))
    print(f'{len(logs) - 1} kills, {mid_save} with a save in progress, '
          f'{before_first_save} before the first save')
    assert before_first_save < len(logs) - 1  # some kill came after a save
