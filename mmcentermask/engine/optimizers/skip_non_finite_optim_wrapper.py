"""Skip (and count) the updates of steps whose loss is NaN or infinite.

The alternative to stopping
(:class:`~mmcentermask.engine.hooks.NonFiniteLossHook`, on in every config):
with ``optim_wrapper=dict(type='SkipNonFiniteOptimWrapper', max_skips=10,
optimizer=...)`` a step with a non-finite total loss runs no backward pass and
no optimizer step (weights, momentum and Adam moments stay as they were), a
warning names the iteration and the count, and training stops with
``FloatingPointError`` once more than ``max_skips`` steps were skipped.
``NonFiniteLossHook`` leaves the decision to this wrapper when it is in use.
With gradient accumulation, a skipped step also drops the gradients accumulated
since the last update.
"""
from typing import Dict, Optional

import torch
from mmengine.logging import MessageHub, print_log
from mmengine.optim import OptimWrapper

from mmdet.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class SkipNonFiniteOptimWrapper(OptimWrapper):
    """``OptimWrapper`` that skips the update of a step with a non-finite loss.

    Args:
        max_skips (int): Stop with ``FloatingPointError`` when more steps than
        this
            were skipped in this run. Defaults to 10.
        **kwargs: :class:`mmengine.optim.OptimWrapper`'s arguments.
    """

    def __init__(self, *args, max_skips: int = 10, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if max_skips < 0:
            raise ValueError(f'max_skips must be >= 0, got {max_skips}')
        self.max_skips = max_skips
        self.skipped = 0

    def update_params(self,
                      loss: torch.Tensor,
                      step_kwargs: Optional[Dict] = None,
                      zero_kwargs: Optional[Dict] = None) -> None:
        if torch.isfinite(loss).all():
            return super().update_params(loss, step_kwargs, zero_kwargs)
        self.skipped += 1
        # what backward() counts, so gradient accumulation stays aligned
        self._inner_count += 1
        self.zero_grad(**(zero_kwargs or {}))
        hub = MessageHub.get_current_instance()
        step = hub.get_info('iter', -1) + 1
        hub.update_info('skipped_non_finite_steps', self.skipped)
        if self.skipped > self.max_skips:
            raise FloatingPointError(
                f'Non-finite training loss ({loss.detach().item()}) at '
                f'iteration {step}: {self.skipped} steps skipped, more than '
                f'max_skips={self.max_skips}. Lower the learning rate or add '
                'optim_wrapper.clip_grad, and check the annotations for NaN '
                'or infinite coordinates.')
        print_log(
            f'Skipped the update of iteration {step}: the loss is '
            f'{loss.detach().item()} ({self.skipped} of at most '
            f'{self.max_skips} skipped steps).',
            logger='current',
            level=30)
