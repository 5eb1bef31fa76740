"""Runner parts: hooks that keep a run resumable, stop it on bad numbers
and fold BNs before testing; the skip-non-finite optimizer wrapper."""
from .hooks import (CrashSafeCheckpointHook, FuseConvBNHook,
                    NonFiniteLossHook)
from .optimizers import SkipNonFiniteOptimWrapper

__all__ = [
    'CrashSafeCheckpointHook', 'FuseConvBNHook', 'NonFiniteLossHook',
    'SkipNonFiniteOptimWrapper'
]
