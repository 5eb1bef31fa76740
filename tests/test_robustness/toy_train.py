"""A tiny MMEngine training run for the checkpoint tests (in-process or as a
script).

    python toy_train.py WORK_DIR LOSS_LOG MAX_ITERS [--resume] [--hook TYPE]
        [--ballast N]

Iteration-based loop, checkpoint every iteration with ``max_keep_ckpts=1`` (the
quick start's setting), shuffled data and dropout (so the losses depend on the
sampler and torch's generator), and a ``ballast`` buffer of N floats that makes
each checkpoint large, so that a save takes most of an iteration's time. Each
iteration appends ``iter<TAB>loss<TAB>end`` (``float.hex``, exact) to LOSS_LOG.
"""
import argparse
import os
import sys
import uuid

import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner

import mmcentermask  # noqa: F401  (registers the hooks)


class DropoutToy(BaseModel):

    def __init__(self, ballast: int = 0):
        super().__init__()
        self.linear = nn.Linear(8, 1)
        g = torch.Generator().manual_seed(
            0)  # the same weights in every process
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(1, 8, generator=g) * 0.3)
            self.linear.bias.zero_()
        self.dropout = nn.Dropout(0.5)
        self.register_buffer('ballast', torch.zeros(ballast))

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.linear(self.dropout(inputs)).squeeze(-1)  # (B, )
        if mode == 'loss':
            loss = ((out - labels)**2).mean()
            if getattr(self, 'poison', False):  # set by a test: a NaN loss
                loss = loss * float('nan')
            return dict(loss=loss)
        return out


class LossLog(Hook):
    """Append ``iter<TAB>loss.hex()<TAB>end`` per iteration (flushed)."""

    priority = 'HIGHEST'

    def __init__(self, path):
        self.path = path

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        with open(self.path, 'a') as f:
            f.write(
                f'{runner.iter + 1}\t{outputs["loss"].item().hex()}\tend\n')


def toy_dataset(n=40):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    return [dict(inputs=x[i], labels=x[i].sum()) for i in range(n)]


def build_runner(work_dir,
                 loss_log,
                 max_iters,
                 resume=False,
                 hook='CrashSafeCheckpointHook',
                 ballast=0,
                 lr=0.01,
                 extra_hooks=(),
                 optim_wrapper=None,
                 **hook_kwargs):
    return Runner(
        model=DropoutToy(ballast),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=toy_dataset(),
            batch_size=4,
            num_workers=0,
            sampler=dict(type='InfiniteSampler', shuffle=True),
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(
            optimizer=dict(type='SGD', lr=lr, momentum=0.9),
            **(optim_wrapper or {})),
        param_scheduler=dict(
            type='MultiStepLR', by_epoch=False, milestones=[3], end=1000),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(
            checkpoint=dict(
                type=hook,
                by_epoch=False,
                interval=1,
                max_keep_ckpts=1,
                **hook_kwargs),
            logger=dict(type='LoggerHook', interval=1000)),
        custom_hooks=[LossLog(str(loss_log)), *extra_hooks],
        randomness=dict(seed=0),
        resume=resume,
        default_scope='mmdet',
        # a fresh MessageHub / logger per run (MMEngine names them by the
        # timestamp, so two runs in one second would share the loss history)
        experiment_name=f'toy_{uuid.uuid4().hex}',
        log_level='WARNING')


def read_losses(path):
    """{iteration: [loss, ...]} of a LOSS_LOG; torn lines are skipped."""
    losses = {}
    if not os.path.exists(path):
        return losses
    for line in open(path).read().splitlines():
        parts = line.split('\t')
        if len(parts) == 3 and parts[2] == 'end':
            losses.setdefault(int(parts[0]),
                              []).append(float.fromhex(parts[1]))
    return losses


if __name__ == '__main__':
    parser = argparse.ArgumentParser()
    parser.add_argument('work_dir')
    parser.add_argument('loss_log')
    parser.add_argument('max_iters', type=int)
    parser.add_argument('--resume', action='store_true')
    parser.add_argument('--hook', default='CrashSafeCheckpointHook')
    parser.add_argument('--ballast', type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    build_runner(args.work_dir, args.loss_log, args.max_iters, args.resume,
                 args.hook, args.ballast).train()
    sys.exit(0)
