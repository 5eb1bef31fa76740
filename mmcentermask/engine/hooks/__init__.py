from .crash_safe_checkpoint_hook import CrashSafeCheckpointHook
from .non_finite_loss_hook import NonFiniteLossHook

__all__ = ['CrashSafeCheckpointHook', 'NonFiniteLossHook']
