"""Stop training on a NaN or infinite loss, naming the loss and the iteration.

MMDetection's :class:`~mmdet.engine.hooks.CheckInvalidLossHook` checks the
total loss every 50 iterations and fails with an empty ``AssertionError`` (its
message is the return value of ``logger.info``, i.e. ``None``). A run with too
high a learning rate therefore trains on, writes NaN checkpoints and exits 0.
This subclass checks every iteration by default, names each non-finite loss
with its value and the iteration, and runs before
:class:`~mmengine.hooks.CheckpointHook` in the same iteration (priority
``ABOVE_NORMAL`` against ``VERY_LOW``), so no checkpoint with NaN weights is
written: the last checkpoint on disk is the last good one. To skip such steps
instead, use ``optim_wrapper=dict(type='SkipNonFiniteOptimWrapper',
max_skips=N, ...)`` (:mod:`mmcentermask.engine.optimizers`); this hook then
leaves the decision to it.
"""
import math
from typing import Optional

import torch
from mmdet.engine.hooks import CheckInvalidLossHook
from mmdet.registry import HOOKS


@HOOKS.register_module()
class NonFiniteLossHook(CheckInvalidLossHook):
    """Raise ``FloatingPointError`` when a training loss is NaN or infinite.

    Args:
        interval (int): Check every ``interval`` iterations. Defaults to 1 (a
        check is
            a few scalar comparisons).
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, interval: int = 1) -> None:
        super().__init__(interval=interval)

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        if not outputs or not self.every_n_train_iters(runner, self.interval):
            return
        from mmcentermask.engine.optimizers import SkipNonFiniteOptimWrapper
        if isinstance(runner.optim_wrapper, SkipNonFiniteOptimWrapper):
            return  # the wrapper skipped the update and counts
        bad = {}
        for name, value in outputs.items():
            if isinstance(value, torch.Tensor):
                if value.numel() and not torch.isfinite(value).all():
                    bad[name] = value.detach().flatten()[0].item()
            elif isinstance(value, float) and not math.isfinite(value):
                bad[name] = value
        if bad:
            names = ', '.join(f'{k}={v}' for k, v in bad.items())
            last = runner.message_hub.get_info('last_ckpt')
            last = f'; the last checkpoint is {last}' if last else ''
            raise FloatingPointError(
                f'Non-finite training loss at iteration {runner.iter + 1} '
                f'(epoch {runner.epoch + 1}): {names}. Training stopped '
                f'before a checkpoint with these weights was written{last}. '
                'Usual causes: too high a learning rate (lower '
                'optim_wrapper.optimizer.lr or add '
                'optim_wrapper.clip_grad=dict(max_norm=...)), or invalid '
                'annotations (boxes or polygons with NaN or infinite '
                'coordinates).')
