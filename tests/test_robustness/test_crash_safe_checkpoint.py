"""CrashSafeCheckpointHook: a crash at any moment or a full disk leaves a
resumable state, resuming gives the losses of an uninterrupted run, a stale
last_checkpoint falls back to the newest complete checkpoint, and --resume
refuses a checkpoint that does not fit the model."""
import errno
import glob
import os
import os.path as osp
import random
import shutil
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch
from mmengine.fileio.backends import LocalBackend

from mmcentermask.engine.hooks.checkpoint_files import format_size
from mmcentermask.utils.checkpoint import load_local_checkpoint
from mmcentermask.utils.weight_check import ResumeMismatchError
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


def fail_write(monkeypatch, number, error_number):
    """Checkpoint write ``number`` stops after half its bytes with
    ``OSError(error_number)`` (a full disk for ENOSPC); the disk reports
    1234567 bytes free."""
    put = LocalBackend.put
    count = {'writes': 0}

    def failing_put(self, obj, filepath):
        if str(filepath).endswith('.pth.tmp'):
            count['writes'] += 1
            if count['writes'] == number:
                with open(filepath, 'wb') as f:
                    f.write(obj[:len(obj) // 2])
                raise OSError(error_number, os.strerror(error_number))
        put(self, obj, filepath)

    monkeypatch.setattr(LocalBackend, 'put', failing_put)
    monkeypatch.setattr(shutil, 'disk_usage',
                        lambda path: SimpleNamespace(free=1234567))


def test_full_disk_names_the_folder_and_keeps_the_last_checkpoint(
        reference, tmp_path, monkeypatch):
    work = tmp_path / 'work'
    fail_write(monkeypatch, 3, errno.ENOSPC)
    with pytest.raises(OSError) as info:
        train(work, tmp_path / 'a.txt', 8)
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC
    message = str(info.value)
    size = format_size(osp.getsize(work / 'iter_2.pth'))
    assert message.startswith('[Errno 28] No space left on device: could '
                              f'not save checkpoint iter_3.pth in {work}:')
    assert '1.2 MiB are free there' in message
    assert f'needs about {size} (the size of iter_2.pth)' in message
    assert 'The incomplete .iter_3.pth.tmp was removed' in message
    assert (f'The last complete checkpoint, {work / "iter_2.pth"}, is intact '
            'and last_checkpoint names it') in message
    assert 'max_keep_ckpts=1 it keeps, so the folder needs room for 2 ' \
        'checkpoints' in message
    assert 'then continue with --resume' in message
    assert not [p for p in os.listdir(work) if p.endswith('.tmp')]
    assert last_checkpoint(work) == str(work / 'iter_2.pth')
    assert load_local_checkpoint(last_checkpoint(work))['meta']['iter'] == 2
    losses = train(work, tmp_path / 'b.txt', 8, resume=True)
    assert {
        i: v[0]
        for i, v in losses.items()
    } == {
        i: reference[i]
        for i in range(3, 9)
    }


def test_full_disk_at_the_first_save(tmp_path, monkeypatch):
    work = tmp_path / 'work'
    fail_write(monkeypatch, 1, errno.ENOSPC)
    with pytest.raises(OSError) as info:
        train(work, tmp_path / 'a.txt', 8)
    message = str(info.value)
    assert 'No checkpoint of this run is complete yet' in message
    assert 'needs more than the ' in message
    assert 'written before the disk filled' in message
    assert not [p for p in os.listdir(work) if '.pth' in p]


def test_other_write_errors_pass_through_without_the_temporary(
        tmp_path, monkeypatch):
    work = tmp_path / 'work'
    fail_write(monkeypatch, 2, errno.EIO)
    with pytest.raises(OSError) as info:
        train(work, tmp_path / 'a.txt', 8)
    assert info.value.errno == errno.EIO
    assert 'could not save' not in str(info.value)
    assert sorted(p for p in os.listdir(work) if '.pth' in p) == ['iter_1.pth']


def resume_warnings(work):
    """The warnings of the runs' log files in ``work``."""
    text = ''.join(
        open(path).read() for path in glob.glob(str(work / '*' / '*.log')))
    return [line for line in text.splitlines() if 'WARNING' in line]


def test_stale_last_checkpoint_falls_back_to_the_newest_complete_one(
        reference, tmp_path):
    work = tmp_path / 'work'
    train(work, tmp_path / 'a.txt', 4)  # keeps iter_4.pth only
    data = (work / 'iter_4.pth').read_bytes()
    (work / 'iter_6.pth').write_bytes(data[:len(data) // 2])  # incomplete
    (work / 'last_checkpoint').write_text(str(work / 'iter_7.pth'))
    losses = train(work, tmp_path / 'b.txt', 8, resume=True)
    assert {
        i: v[0]
        for i, v in losses.items()
    } == {
        i: reference[i]
        for i in range(5, 9)
    }
    assert any(f'{work / "last_checkpoint"} names {work / "iter_7.pth"}, '
               'which does not exist; resuming from '
               f'{work / "iter_4.pth"}, the newest complete checkpoint in '
               f'{work}' in line for line in resume_warnings(work))


def test_missing_last_checkpoint_resumes_the_newest_checkpoint(
        reference, tmp_path):
    """A kill between the first rename and the first last_checkpoint."""
    work = tmp_path / 'work'
    train(work, tmp_path / 'a.txt', 4)
    os.remove(work / 'last_checkpoint')
    losses = train(work, tmp_path / 'b.txt', 8, resume=True)
    assert sorted(losses) == [5, 6, 7, 8]
    assert any(f'there is no {work / "last_checkpoint"}; resuming from '
               f'{work / "iter_4.pth"}' in line
               for line in resume_warnings(work))


def test_stale_last_checkpoint_without_a_checkpoint_names_the_fix(tmp_path):
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'last_checkpoint').write_text('/gone/iter_5.pth\n')
    with pytest.raises(FileNotFoundError) as info:
        train(work, tmp_path / 'a.txt', 8, resume=True)
    message = str(info.value)
    assert (f'{work / "last_checkpoint"} names /gone/iter_5.pth, which does '
            f"not exist (it says '/gone/iter_5.pth'), and {work} holds no "
            'complete iter_*.pth') in message
    assert f'delete {work / "last_checkpoint"}' in message
    assert '--resume PATH' in message


def test_resume_refuses_a_checkpoint_of_another_shape(tmp_path):
    """The toy's ballast buffer stands for a layer whose size changed;
    load_from (no resume) still loads what fits."""
    work = tmp_path / 'work'
    torch.set_num_threads(1)
    build_runner(work, tmp_path / 'a.txt', 2, ballast=2).train()
    runner = build_runner(work, tmp_path / 'b.txt', 4, resume=True, ballast=3)
    with pytest.raises(ResumeMismatchError) as info:
        runner.train()
    message = str(info.value)
    assert (f'Cannot resume from {work / "iter_2.pth"}: of the 3 tensors of '
            'DropoutToy, 1 have another shape in the checkpoint (ballast '
            '(2,) in the checkpoint vs (3,) in the model)') in message
    assert f'load_from={work / "iter_2.pth"} and without --resume' in message
    fresh = build_runner(tmp_path / 'new', tmp_path / 'c.txt', 4, ballast=3)
    fresh.load_checkpoint(str(work / 'iter_2.pth'))  # what load_from does
    torch.testing.assert_close(
        fresh.model.linear.weight,
        load_local_checkpoint(str(
            work / 'iter_2.pth'))['state_dict']['linear.weight'])


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
