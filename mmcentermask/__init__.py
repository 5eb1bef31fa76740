"""mmcentermask: CenterMask and VoVNet for MMDetection 3.x.

Importing the package (which every config does through ``custom_imports``)
checks the installed OpenMMLab stack, registers every module into MMDetection's
registries and lets MMEngine load its own checkpoints on torch >= 2.6.
"""
from .utils.version_gate import check_stack

check_stack()

from .utils import register_local_checkpoint_loader  # noqa: E402
from .version import __version__  # noqa: E402

register_local_checkpoint_loader()

from . import models  # noqa: E402,F401

__all__ = ['__version__']
