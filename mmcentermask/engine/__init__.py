"""Training-loop parts: hooks that keep a run resumable and stop it on bad numbers."""
from .hooks import CrashSafeCheckpointHook, NonFiniteLossHook

__all__ = ['CrashSafeCheckpointHook', 'NonFiniteLossHook']
