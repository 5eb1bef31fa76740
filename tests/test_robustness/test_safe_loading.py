"""Local checkpoints load with weights_only=True and MMEngine's allow-list: a
real Runner checkpoint loads, a crafted one is refused before anything in it
runs."""
import builtins
import os
import pickle

import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader, load_checkpoint

from mmcentermask.utils.checkpoint import (TRUST_ENV, CheckpointReadError,
                                           CheckpointRefusedError,
                                           load_local_checkpoint)
from toy_train import DropoutToy, build_runner


@pytest.fixture(scope='module')
def runner_checkpoint(tmp_path_factory):
    work = tmp_path_factory.mktemp('runner')
    runner = build_runner(work, work / 'loss.txt', 2)
    runner.train()
    return str(work / 'iter_2.pth')


@pytest.fixture(autouse=True)
def untrusted(monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)


def test_runner_checkpoint_loads_with_its_history_buffers(runner_checkpoint):
    ckpt = CheckpointLoader.load_checkpoint(runner_checkpoint)
    assert set(ckpt) >= {
        'meta', 'state_dict', 'message_hub', 'optimizer', 'param_schedulers',
        'rng_state'
    }
    loss = ckpt['message_hub']['log_scalars']['train/loss']
    assert isinstance(loss, HistoryBuffer)
    assert loss.mean() == loss.statistics('mean')  # methods restored
    model = DropoutToy()
    load_checkpoint(model, runner_checkpoint)  # the path test / load_from take
    torch.testing.assert_close(model.linear.weight,
                               ckpt['state_dict']['linear.weight'])


class RunsCode:
    """Unpickling this calls builtins.exec, the classic crafted checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (builtins.exec, (f'open({self.marker!r}, "w").write("ran")', ))


class HistoryBufferEscape:
    """getattr from an allowed class towards its module globals (then eval)."""

    def __reduce__(self):
        return (getattr, (HistoryBuffer, '__init__'))


@pytest.mark.parametrize('payload', ['exec', 'getattr'])
def test_crafted_checkpoint_is_refused_and_nothing_runs(tmp_path, payload):
    marker = tmp_path / 'ran.txt'
    evil = RunsCode(
        str(marker)) if payload == 'exec' else HistoryBufferEscape()
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': {}, 'x': evil}, path)
    with pytest.raises(CheckpointRefusedError) as info:
        CheckpointLoader.load_checkpoint(str(path))
    message = str(info.value)
    assert str(path) in message
    assert f'{TRUST_ENV}=1' in message
    assert ('exec' in message) if payload == 'exec' else ('__init__'
                                                          in message)
    assert not marker.exists()


def test_opt_in_loads_a_trusted_file_with_other_types(tmp_path, monkeypatch):
    path = tmp_path / 'custom.pth'
    torch.save({'state_dict': {}, 'extra': pickle.PickleError('x')}, path)
    with pytest.raises(CheckpointRefusedError):
        load_local_checkpoint(str(path))
    monkeypatch.setenv(TRUST_ENV, '1')
    assert isinstance(
        load_local_checkpoint(str(path))['extra'], pickle.PickleError)
    assert isinstance(
        load_local_checkpoint(str(path), trusted=True)['extra'],
        pickle.PickleError)


@pytest.mark.parametrize('kind,reason', [
    ('empty', r'empty \(0 bytes\)'),
    ('text', 'neither a torch.save archive nor a pickle of tensors'),
    ('truncated', 'damaged or truncated'),
])
def test_unreadable_file_is_named_with_the_reason(tmp_path, runner_checkpoint,
                                                  kind, reason):
    path = tmp_path / f'{kind}.pth'
    if kind == 'empty':
        path.write_bytes(b'')
    elif kind == 'text':
        path.write_text('this is a config, not weights\n')
    else:
        data = open(runner_checkpoint, 'rb').read()
        path.write_bytes(data[:len(data) // 3])
    with pytest.raises(CheckpointReadError, match=reason) as info:
        CheckpointLoader.load_checkpoint(str(path))
    assert str(path) in str(info.value)
    assert isinstance(info.value, pickle.UnpicklingError)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        load_local_checkpoint(str(tmp_path / 'nope.pth'))


def test_allow_list_is_scoped_to_the_loader(runner_checkpoint):
    """The allow-list is not added to torch process-wide."""
    load_local_checkpoint(runner_checkpoint)
    assert HistoryBuffer not in torch.serialization.get_safe_globals()
    with pytest.raises(pickle.UnpicklingError):
        torch.load(runner_checkpoint, weights_only=True)
    assert os.path.isfile(runner_checkpoint)
