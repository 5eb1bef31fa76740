"""Access to the centermask2 golden reference data for the tests.

Two copies exist: the compact one in ``tests/data/golden`` (part of the
repository: every test that can use it does) and the full one
(``<repo>/../shared/golden``, or ``$MMCM_GOLDEN_DIR``) with the large
intermediate maps. :func:`load_npz` serves an array from the compact copy
when it has it, else from the full set, and skips the calling test, with the
reason, when neither has it.

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
import sys
from collections import OrderedDict
from pathlib import Path
from types import ModuleType
from typing import Dict, Iterable, Optional

import numpy as np
import pytest
import torch

GOLDEN_DIR_ENV = 'MMCM_GOLDEN_DIR'
REPO_ROOT = Path(__file__).resolve().parents[1]
COMPACT_DIR = REPO_ROOT / 'tests' / 'data' / 'golden'
VARIANTS = ('lite_v19_slim_dw', 'v39')
INFER_IMAGES = ('coffee', 'moto_crop')
TRAIN_RUNS = ('train_coffee', 'train_moto_crop', 'train_batch2')


def golden_dir() -> Path:
    """The compact golden copy in the repository (images, manifests,
    ``meta.json``, ``make_weights.py``, compact arrays)."""
    return COMPACT_DIR


def full_golden_dir() -> Path:
    """Location of the full golden set: ``$MMCM_GOLDEN_DIR`` if set, else
    ``<repo>/../shared/golden``."""
    env = os.environ.get(GOLDEN_DIR_ENV)
    return Path(env) if env else REPO_ROOT.parent / 'shared' / 'golden'


def _skip_reason() -> str:
    return (f'needs the full golden set: {full_golden_dir()} does not exist '
            f'(set {GOLDEN_DIR_ENV} to the centermask2 golden data)')


requires_golden = pytest.mark.skipif(
    not full_golden_dir().is_dir(), reason=_skip_reason())


def require_golden_dir() -> Path:
    """Return the full golden set, or skip the calling test if it is
    missing."""
    path = full_golden_dir()
    if not path.is_dir():
        pytest.skip(_skip_reason())
    return path


@functools.lru_cache(maxsize=None)
def _compact_arrays(variant: str, name: str) -> Dict[str, np.ndarray]:
    """The arrays of a compact file, with ``input_tensor`` rebuilt from
    ``input_image`` (do not modify them in place: they are cached)."""
    sys.path.insert(0, str(COMPACT_DIR))
    try:
        from compact_golden import input_tensor_of
    finally:
        sys.path.remove(str(COMPACT_DIR))
    with np.load(COMPACT_DIR / variant / f'{name}.npz') as data:
        arrays = {k: data[k] for k in data.files}
    if 'input_image' in arrays:
        arrays['input_tensor'] = input_tensor_of(arrays)
    return arrays


def load_npz(variant: str,
             name: str,
             keys: Optional[Iterable[str]] = None) -> Dict[str, np.ndarray]:
    """Load arrays of a golden file, from the compact copy when it has them
    all, else from the full set (the calling test is skipped if that is
    missing).

    Args:
        variant (str): One of :data:`VARIANTS`.
        name (str): File stem, e.g. ``'coffee_infer'`` or ``'train_batch2'``.
        keys (Iterable[str], optional): Arrays to load; by default every
            array of the compact file.

    Returns:
        dict[str, np.ndarray]: The requested arrays.
    """
    compact = _compact_arrays(variant, name)
    if keys is None:
        return dict(compact)
    keys = list(keys)
    if all(k in compact for k in keys):
        return {k: compact[k] for k in keys}
    path = require_golden_dir() / variant / f'{name}.npz'
    with np.load(path) as data:
        return {k: data[k] for k in keys}


@functools.lru_cache(maxsize=None)
def make_weights_module() -> ModuleType:
    """Import ``make_weights.py`` of the golden directory as a module."""
    path = golden_dir() / 'make_weights.py'
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
    manifest = module.load_manifest(golden_dir() / variant / 'manifest.json')
    manifest = [e for e in manifest if e['key'].startswith(prefix)]
    if not manifest:
        raise KeyError(f'no {variant} manifest key starts with {prefix!r}')
    return module.build_state_dict(manifest)


def convert_part(source: Dict[str, torch.Tensor],
                 part,
                 target: Optional[Dict[str, torch.Tensor]] = None
                 ) -> 'OrderedDict[str, torch.Tensor]':
    """Convert the keys of ``source`` under ``part.src_prefix`` with one
    :class:`~mmcentermask.converters.engine.Part` (e.g. one head of the
    golden weights)."""
    from mmcentermask.converters.engine import Conversion, run_parts
    source = {k: v for k, v in source.items() if k.startswith(part.src_prefix)}
    result = Conversion(OrderedDict(), 'centermask2')
    return run_parts(source, [part], target, result).state_dict


def expected_state_dict_sha256(variant: str) -> str:
    """The ``state_dict_sha256`` of the full weights of a variant, as stored
    in its ``meta.json`` (compare with
    ``make_weights_module().state_dict_sha256(golden_state_dict(variant))``).
    """
    meta = json.loads(
        (golden_dir() / variant / 'meta.json').read_text())
    return meta['weights_tensor_sha256']
