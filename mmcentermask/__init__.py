"""mmcentermask: CenterMask and VoVNet for MMDetection 3.x.

Importing the package (which every config does through ``custom_imports``)
checks the installed OpenMMLab stack, registers every module into MMDetection's
registries, lets MMEngine load its own checkpoints on torch >= 2.6 and
launch distributed jobs on machines without CUDA.
"""
from .utils.version_gate import check_stack

check_stack()

from .utils import (patch_cpu_distributed,  # noqa: E402
                    register_local_checkpoint_loader)
from .version import __version__  # noqa: E402

register_local_checkpoint_loader()
patch_cpu_distributed()

from . import datasets, models  # noqa: E402,F401

__all__ = ['__version__']
