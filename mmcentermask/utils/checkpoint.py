"""Make MMEngine 0.10.7 load its own checkpoints on torch >= 2.6.

torch 2.6 made ``torch.load(weights_only=True)`` the default. MMEngine 0.10.7
calls ``torch.load`` without the argument, and its checkpoints pickle
``mmengine.logging.HistoryBuffer`` and numpy arrays in ``message_hub``, so
``load_from``, ``--resume`` and ``tools/test.py CONFIG CKPT`` fail with
``UnpicklingError: Weights only load failed``.

Importing :mod:`mmcentermask` replaces the loader of the *local file* scheme
of :class:`mmengine.runner.CheckpointLoader` by one that passes
``weights_only=False``. Only paths on the local file system that the user
named in a config or on the command line take this path; URLs keep MMEngine's
loaders and torch's safe default. Unpickling runs code from the file, so only
load checkpoints you trust.
"""
import os.path as osp
from typing import Any, Callable, Optional, Union

import torch
from mmengine.runner import CheckpointLoader

MapLocation = Optional[Union[str, torch.device, Callable]]


def load_local_checkpoint(filename: str, map_location: MapLocation = None) -> Any:
    """Load a trusted local checkpoint written by MMEngine or torch.

    Args:
        filename (str): Path of the checkpoint file (``~`` is expanded).
        map_location: Passed to :func:`torch.load`.

    Returns:
        The unpickled object, usually a dict with ``state_dict`` and ``meta``.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return torch.load(filename, map_location=map_location, weights_only=False)


def register_local_checkpoint_loader() -> None:
    """Install :func:`load_local_checkpoint` as MMEngine's local loader.

    Idempotent: registering again replaces the same scheme.
    """
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_local_checkpoint, force=True)
