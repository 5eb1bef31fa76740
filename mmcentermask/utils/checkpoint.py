"""Safe loading of local checkpoints: MMEngine's files load, code does not run.

Why this module patches MMEngine. torch 2.6 made
``torch.load(weights_only=True)`` the default. MMEngine 0.10.7 calls
``torch.load`` without the argument, and its checkpoints pickle
``mmengine.logging.HistoryBuffer`` objects and numpy arrays in ``message_hub``,
so ``load_from``, ``--resume`` and ``tools/test.py CONFIG CKPT`` fail with
``UnpicklingError: Weights only load failed``. Importing :mod:`mmcentermask`
(every config does, through ``custom_imports``) therefore registers
:func:`load_local_checkpoint` as the loader of MMEngine's *local file* scheme
(:class:`mmengine.runner.CheckpointLoader` ``prefixes=''``). That is the whole
patch; URLs keep MMEngine's loaders.

What the loader does:

* ``torch.load(weights_only=True)`` with an allow-list of exactly the types an
  MMEngine
  checkpoint holds besides tensors and plain containers
  (:data:`MMENGINE_SAFE_GLOBALS`: ``HistoryBuffer``, numpy arrays, dtypes and
  scalars, and a ``getattr`` limited to the statistics methods a
  ``HistoryBuffer`` pickles). The allow-list is active only inside this loader
  (``torch.serialization.safe_globals``), not process-wide.
* Anything else in the pickle (a function to call, another class) is refused
  with :class:`CheckpointRefusedError`, which names the file and the refused
  global; nothing from the file runs.
* A file that is not a PyTorch checkpoint (text, empty, truncated) gives
  :class:`CheckpointReadError` naming the file and the reason.
* Opt-in for a file you trust: set the environment variable
  ``MMCM_TRUST_CHECKPOINTS=1`` (or call ``load_local_checkpoint(...,
  trusted=True)``); the file is then unpickled with ``weights_only=False``,
  which can run code stored in it.
"""
import os
import os.path as osp
import pickle
import zipfile
from typing import Any, Callable, List, Optional, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader

MapLocation = Optional[Union[str, torch.device, Callable]]

#: Environment variable that lets local checkpoints be fully unpickled.
TRUST_ENV = 'MMCM_TRUST_CHECKPOINTS'

# The statistics HistoryBuffer registers for itself (its class dict fills
# lazily).
_HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """``getattr`` as a ``HistoryBuffer`` pickle uses it, and nothing more.

    A pickled ``HistoryBuffer`` holds its statistics methods, which pickle
    writes as ``getattr(HistoryBuffer, 'mean')``. A general ``getattr`` would
    let a crafted file walk from any allowed object to ``eval``, so this one
    only returns the registered statistics methods of ``HistoryBuffer``.
    """
    if obj is HistoryBuffer and (name in _HISTORY_BUFFER_STATISTICS
                                 or name in HistoryBuffer._statistics_methods):
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'getattr({obj!r}, {name!r}) is not allowed: only HistoryBuffer '
        'statistics methods are')


def _numpy_globals() -> List[Any]:
    """numpy's array, dtype and scalar reconstructors, this numpy's names."""
    core = getattr(np, '_core', None) or np.core  # numpy 2 renamed np.core
    names = [
        core.multiarray._reconstruct, np.ndarray, np.dtype,
        core.multiarray.scalar
    ]
    # numpy >= 1.25 may pickle dtypes by their class
    # (numpy.dtypes.Float32DType, ...)
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        names += [
            getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')
        ]
    return names


#: The types an MMEngine 0.10 checkpoint holds besides tensors and plain
#: containers.
MMENGINE_SAFE_GLOBALS: List[Any] = [
    HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr')
] + _numpy_globals()

# Substrings of torch's weights-only errors that mean "this global was
# refused".
_REFUSED_MARKERS = ('Unsupported global', 'unsupported GLOBAL', 'is blocked',
                    'Trying to call reduce', 'Can only create new object',
                    'is not allowed')


class CheckpointRefusedError(pickle.UnpicklingError):
    """A checkpoint holds an object outside the allow-list; nothing was run."""


class CheckpointReadError(pickle.UnpicklingError):
    """A file is not a readable PyTorch checkpoint (empty, truncated, ...)."""


def trust_from_env() -> bool:
    """Whether ``MMCM_TRUST_CHECKPOINTS`` is 1, true or yes."""
    return os.environ.get(TRUST_ENV,
                          '').strip().lower() in ('1', 'true', 'yes')


def load_local_checkpoint(filename: str,
                          map_location: MapLocation = None,
                          trusted: Optional[bool] = None) -> Any:
    """Load a local checkpoint written by MMEngine or ``torch.save``.

    Args:
        filename (str): Path of the checkpoint file (``~`` is expanded).
        map_location: Passed to :func:`torch.load`.
        trusted (bool, optional): ``True`` unpickles everything
            (``weights_only=False``: the file can run code). ``None`` (default)
            reads ``MMCM_TRUST_CHECKPOINTS`` from the environment.

    Returns:
        The loaded object, usually a dict with ``state_dict``, ``meta`` and,
        for a training checkpoint, ``message_hub``, ``optimizer``,
        ``param_schedulers``.

    Raises:
        FileNotFoundError: ``filename`` does not exist.
        CheckpointRefusedError: the file holds a type outside the allow-list.
        CheckpointReadError: the file is not a PyTorch checkpoint.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    if trusted is None:
        trusted = trust_from_env()
    try:
        if trusted:
            return torch.load(
                filename, map_location=map_location, weights_only=False)
        with torch.serialization.safe_globals(MMENGINE_SAFE_GLOBALS):
            return torch.load(
                filename, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for unreadable files
        raise _explain(filename, error, trusted) from error


def _explain(filename: str, error: Exception, trusted: bool) -> Exception:
    """The error to raise for ``error`` from ``torch.load(filename)``."""
    text = str(error)
    detail = _detail(text)
    if not trusted and any(m in text for m in _REFUSED_MARKERS):
        return CheckpointRefusedError(
            f'Refused to load checkpoint {filename}: it holds an object that '
            f'MMEngine checkpoints do not contain ({detail}). Unpickling it '
            'could run code stored in the file, so nothing was loaded. If '
            f'you trust this file, load it with {TRUST_ENV}=1 in the '
            f'environment (e.g. `{TRUST_ENV}=1 python tools/test.py CONFIG '
            f'{filename}`).')
    size = osp.getsize(filename)
    if size == 0:
        reason = 'the file is empty (0 bytes)'
    elif _starts_like_zip(filename) or 'zip archive' in text:
        reason = (f'the archive is damaged or truncated ({size} bytes): '
                  f'{detail}')
    else:
        reason = ('it is neither a torch.save archive nor a pickle of tensors '
                  f'({type(error).__name__}: {detail})')
    return CheckpointReadError(
        f'{filename} is not a readable PyTorch checkpoint: {reason}. Give the '
        '.pth file written by MMEngine (work_dir/iter_*.pth) or by a '
        'converter in tools/model_converters/.')


def _starts_like_zip(filename: str) -> bool:
    """Whether the file begins as ``torch.save``'s zip archive does."""
    with open(filename, 'rb') as f:
        return f.read(4) == b'PK\x03\x04' or zipfile.is_zipfile(filename)


def _detail(text: str) -> str:
    """The informative line of a torch.load error (torch adds boilerplate)."""
    boiler = ('Weights only load failed', 'Please file an issue',
              'Check the documentation')
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(boiler):
            return line.split('. This is an internal miniz error')[0]
    return text.strip()


def register_local_checkpoint_loader() -> None:
    """Install :func:`load_local_checkpoint` as MMEngine's local-file loader.

    Idempotent: registering again replaces the same scheme.
    """
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_local_checkpoint, force=True)
