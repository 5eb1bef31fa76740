"""Training-loop parts that keep a run resumable and stop it on bad numbers."""
from .hooks import CrashSafeCheckpointHook, NonFiniteLossHook
from .optimizers import SkipNonFiniteOptimWrapper

__all__ = [
    'CrashSafeCheckpointHook', 'NonFiniteLossHook', 'SkipNonFiniteOptimWrapper'
]
