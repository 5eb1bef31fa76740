from .checkpoint import load_local_checkpoint, register_local_checkpoint_loader
from .cpu_distributed import patch_cpu_distributed
from .cpu_memory import reuse_cpu_memory
from .version_gate import check_stack, check_version

__all__ = [
    'check_stack', 'check_version', 'load_local_checkpoint',
    'patch_cpu_distributed', 'register_local_checkpoint_loader',
    'reuse_cpu_memory'
]
