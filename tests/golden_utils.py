"""Access to the centermask2 golden reference data for the tests.

The golden directory (``README.md``, ``make_weights.py``, one folder per model
variant with ``manifest.json`` and ``*.npz`` files) is produced by the
authors' centermask2 code and lives next to the repository as
``<repo>/../shared/golden``; the environment variable ``MMCM_GOLDEN_DIR``
points elsewhere. Tests that need it call :func:`require_golden_dir` (or use
the :data:`requires_golden` marker) and are skipped, with the reason, only
when the directory does not exist.

Example::

    from golden_utils import golden_state_dict, load_npz

    data = load_npz('lite_v19_slim_dw', 'coffee_infer', keys=['fpn_p3'])
    sd = golden_state_dict('lite_v19_slim_dw',
                           prefix='proposal_generator.fcos_head.')
"""
import functools
import importlib.util
import json
import os
from collections import OrderedDict
from pathlib import Path
from types import ModuleType
from typing import Dict, Iterable, Optional

import numpy as np
import pytest
import torch

GOLDEN_DIR_ENV = 'MMCM_GOLDEN_DIR'
REPO_ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ('lite_v19_slim_dw', 'v39')
INFER_IMAGES = ('coffee', 'moto_crop')
TRAIN_RUNS = ('train_coffee', 'train_moto_crop', 'train_batch2')


def golden_dir() -> Path:
    """Location of the golden data: ``$MMCM_GOLDEN_DIR`` if set, else
    ``<repo>/../shared/golden``."""
    env = os.environ.get(GOLDEN_DIR_ENV)
    return Path(env) if env else REPO_ROOT.parent / 'shared' / 'golden'


def _skip_reason() -> str:
    return (f'golden data directory {golden_dir()} does not exist '
            f'(set {GOLDEN_DIR_ENV} to the centermask2 golden data)')


requires_golden = pytest.mark.skipif(
    not golden_dir().is_dir(), reason=_skip_reason())


def require_golden_dir() -> Path:
    """Return the golden directory, or skip the calling test if it is
    missing."""
    path = golden_dir()
    if not path.is_dir():
        pytest.skip(_skip_reason())
    return path


def load_npz(variant: str,
             name: str,
             keys: Optional[Iterable[str]] = None) -> Dict[str, np.ndarray]:
    """Load arrays of ``<golden>/<variant>/<name>.npz``.

    Args:
        variant (str): One of :data:`VARIANTS`.
        name (str): File stem, e.g. ``'coffee_infer'`` or ``'train_batch2'``.
        keys (Iterable[str], optional): Arrays to load (all by default; the
            inference files hold ~10 MB).

    Returns:
        dict[str, np.ndarray]: The requested arrays.
    """
    path = require_golden_dir() / variant / f'{name}.npz'
    with np.load(path) as data:
        return {k: data[k] for k in (data.files if keys is None else keys)}


@functools.lru_cache(maxsize=None)
def make_weights_module() -> ModuleType:
    """Import ``make_weights.py`` of the golden directory as a module."""
    path = require_golden_dir() / 'make_weights.py'
    spec = importlib.util.spec_from_file_location('golden_make_weights', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.lru_cache(maxsize=None)
def golden_state_dict(variant: str,
                      prefix: str = '') -> 'OrderedDict[str, torch.Tensor]':
    """Build the synthetic centermask2 weights of a variant.

    The result is cached: do not modify its tensors in place.

    Args:
        variant (str): One of :data:`VARIANTS`.
        prefix (str): Only build the entries whose centermask2 key starts
            with it (e.g. ``'proposal_generator.fcos_head.'``); the values do
            not depend on the other entries as long as the prefix ends at a
            module boundary. ``''`` builds everything (V-39: ~53 M values,
            several seconds).

    Returns:
        OrderedDict[str, Tensor]: centermask2 key -> tensor, manifest order.
    """
    module = make_weights_module()
    manifest = module.load_manifest(require_golden_dir() / variant /
                                    'manifest.json')
    manifest = [e for e in manifest if e['key'].startswith(prefix)]
    if not manifest:
        raise KeyError(f'no {variant} manifest key starts with {prefix!r}')
    return module.build_state_dict(manifest)


def expected_state_dict_sha256(variant: str) -> str:
    """The ``state_dict_sha256`` of the full weights of a variant, as stored
    in its ``meta.json`` (compare with
    ``make_weights_module().state_dict_sha256(golden_state_dict(variant))``).
    """
    meta = json.loads(
        (require_golden_dir() / variant / 'meta.json').read_text())
    return meta['weights_tensor_sha256']
