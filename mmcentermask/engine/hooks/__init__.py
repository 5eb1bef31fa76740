from .compile_network_hook import CompileNetworkHook
from .crash_safe_checkpoint_hook import CrashSafeCheckpointHook
from .fuse_conv_bn_hook import FuseConvBNHook
from .non_finite_loss_hook import NonFiniteLossHook

__all__ = [
    'CompileNetworkHook', 'CrashSafeCheckpointHook', 'FuseConvBNHook',
    'NonFiniteLossHook'
]
