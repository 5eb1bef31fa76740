from .compile_network_hook import CompileNetworkHook
from .crash_safe_checkpoint_hook import CrashSafeCheckpointHook
from .fuse_conv_bn_hook import FuseConvBNHook
from .non_finite_loss_hook import NonFiniteLossHook
from .panoptic_num_class_check_hook import PanopticNumClassCheckHook
from .reuse_cpu_memory_hook import ReuseCPUMemoryHook

__all__ = [
    'CompileNetworkHook', 'CrashSafeCheckpointHook', 'FuseConvBNHook',
    'NonFiniteLossHook', 'PanopticNumClassCheckHook', 'ReuseCPUMemoryHook'
]
