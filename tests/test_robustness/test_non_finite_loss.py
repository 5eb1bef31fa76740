"""NonFiniteLossHook stops training at the first NaN/inf loss, naming the loss
and the iteration, before a checkpoint of the broken weights is written;
SkipNonFiniteOptimWrapper skips such steps and counts them."""
import os

import pytest
import torch
from mmengine.hooks import Hook

from mmcentermask.utils.checkpoint import load_local_checkpoint
from toy_train import build_runner, read_losses


def test_diverging_run_stops_before_saving_nan_weights(tmp_path):
    work = tmp_path / 'work'
    runner = build_runner(
        work,
        tmp_path / 'loss.txt',
        50,
        lr=30.0,
        extra_hooks=[dict(type='NonFiniteLossHook')])
    with pytest.raises(FloatingPointError) as info:
        runner.train()
    losses = read_losses(tmp_path / 'loss.txt')
    bad_iter = min(i for i, v in losses.items()
                   if not torch.isfinite(torch.tensor(v)).all())
    message = str(info.value)
    assert f'Non-finite training loss at iteration {bad_iter} ' in message
    assert 'loss=' in message and 'learning rate' in message
    # names the last good checkpoint
    assert f'iter_{bad_iter - 1}.pth' in message
    assert not (work / f'iter_{bad_iter}.pth').exists()
    kept = [p for p in os.listdir(work) if p.endswith('.pth')]
    assert kept == [f'iter_{bad_iter - 1}.pth']
    state = load_local_checkpoint(str(work / kept[0]))['state_dict']
    assert all(torch.isfinite(v).all() for v in state.values())


def test_without_the_hook_the_run_saves_nan_weights(tmp_path):
    """What the hook prevents (MMEngine trains on and exits normally)."""
    work = tmp_path / 'work'
    build_runner(work, tmp_path / 'loss.txt', 50, lr=30.0).train()
    state = torch.load(work / 'iter_50.pth', weights_only=False)['state_dict']
    assert not torch.isfinite(state['linear.weight']).all()


def test_finite_run_is_untouched(tmp_path):
    build_runner(
        tmp_path / 'work',
        tmp_path / 'loss.txt',
        3,
        extra_hooks=[dict(type='NonFiniteLossHook')]).train()
    assert sorted(read_losses(tmp_path / 'loss.txt')) == [1, 2, 3]


class Poison(Hook):
    """NaN losses at the given iterations; records the weights after each."""

    def __init__(self, iters):
        self.iters, self.weights = set(iters), {}

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        runner.model.poison = runner.iter + 1 in self.iters

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        self.weights[runner.iter +
                     1] = runner.model.linear.weight.detach().clone()


def test_skip_mode_skips_the_update_and_counts(tmp_path):
    poison = Poison({2, 4})
    runner = build_runner(
        tmp_path / 'work',
        tmp_path / 'loss.txt',
        6,
        extra_hooks=[dict(type='NonFiniteLossHook'), poison],
        optim_wrapper=dict(type='SkipNonFiniteOptimWrapper', max_skips=2))
    runner.train()
    assert runner.optim_wrapper.skipped == 2
    assert runner.message_hub.get_info('skipped_non_finite_steps') == 2
    w = poison.weights
    assert torch.equal(w[2], w[1]) and torch.equal(w[4],
                                                   w[3])  # nothing applied
    assert not torch.equal(w[3], w[2]) and not torch.equal(w[6], w[5])
    assert all(torch.isfinite(v).all() for v in w.values())


def test_skip_mode_stops_after_max_skips(tmp_path):
    runner = build_runner(
        tmp_path / 'work',
        tmp_path / 'loss.txt',
        6,
        extra_hooks=[Poison({2, 4})],
        optim_wrapper=dict(type='SkipNonFiniteOptimWrapper', max_skips=1))
    with pytest.raises(
            FloatingPointError,
            match=r'iteration 4: 2 steps skipped, more '
            r'than max_skips=1'):
        runner.train()
