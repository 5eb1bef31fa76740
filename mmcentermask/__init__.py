"""mmcentermask: CenterMask and VoVNet for MMDetection 3.x.

Importing the package (which every config does through ``custom_imports``)
checks the installed OpenMMLab stack, registers every module into MMDetection's
registries, lets MMEngine load its own checkpoints on torch >= 2.6 and
launch distributed jobs on machines without CUDA.

The one change to MMEngine's checkpoint loading: torch >= 2.6 refuses MMEngine
0.10.7's own checkpoints (they pickle ``HistoryBuffer`` and numpy arrays), so
the local-file loader of ``mmengine.runner.CheckpointLoader`` is replaced by
``mmcentermask.utils.checkpoint.load_local_checkpoint``: ``weights_only=True``
plus an allow-list of exactly those types; anything else is refused unless
``MMCM_TRUST_CHECKPOINTS=1`` (see that module).
"""
from .utils.version_gate import check_stack

check_stack()

from .utils import (patch_cpu_distributed,  # noqa: E402
                    register_local_checkpoint_loader)
from .version import __version__  # noqa: E402

# Safe local checkpoint loading on torch >= 2.6 (mmcentermask/utils/checkpoint.py).
register_local_checkpoint_loader()
patch_cpu_distributed()

from . import (datasets, engine, evaluation, models,  # noqa: E402,F401
               visualization)

__all__ = ['__version__']
