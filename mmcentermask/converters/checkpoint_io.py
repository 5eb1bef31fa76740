"""Checkpoint files and target models of the converters: reading the
authors' files, building the model of a config, writing MMEngine
checkpoints."""
import datetime
import os.path as osp
import pickle
import zipfile
from collections import OrderedDict
from typing import Mapping, Optional, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from .engine import (FROZEN_BN_EPS, NUM_BATCHES_TRACKED_REASON, Conversion,
                     ConversionError)

#: COCO classes in contiguous order (COCO category ids sorted ascending),
#: the order of the 80 class channels of every released checkpoint.
COCO_CLASSES: Tuple[str, ...] = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train',
    'truck', 'boat', 'traffic light', 'fire hydrant', 'stop sign',
    'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow',
    'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella', 'handbag',
    'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball', 'kite',
    'baseball bat', 'baseball glove', 'skateboard', 'surfboard',
    'tennis racket', 'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon',
    'bowl', 'banana', 'apple', 'sandwich', 'orange', 'broccoli', 'carrot',
    'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant',
    'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote',
    'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink',
    'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear',
    'hair drier', 'toothbrush')

def load_config(config):
    """An mmengine ``Config`` from a path, a Config or a plain dict."""
    from mmengine.config import Config
    if isinstance(config, (str, bytes)) or hasattr(config, '__fspath__'):
        return Config.fromfile(str(config))
    if isinstance(config, Config):
        return config
    return Config(dict(config))


def build_target_model(config) -> nn.Module:
    """Build ``config.model`` (weights are not initialised: only the key
    set, shapes and BN settings are used)."""
    import mmcentermask  # noqa: F401  (registers the modules)
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    cfg = load_config(config)
    return MODELS.build(cfg.model)


def target_state_dict(cfg) -> 'OrderedDict[str, Tensor]':
    """State dict of the config's model, after checking that its BN layers
    use detectron2's FrozenBN eps (the converted statistics give the same
    output only with the same eps)."""
    model = build_target_model(cfg)
    check_bn_eps(model)
    return model.state_dict()


def check_bn_eps(model: nn.Module) -> None:
    """Raise ConversionError if a BN layer's eps is not 1e-5."""
    from torch.nn.modules.batchnorm import _BatchNorm
    wrong = sorted({
        m.eps
        for m in model.modules()
        if isinstance(m, _BatchNorm) and not np.isclose(m.eps, FROZEN_BN_EPS)
    })
    if wrong:
        raise ConversionError(
            f'target BN layers use eps {wrong}, FrozenBN uses '
            f'{FROZEN_BN_EPS}: set norm_cfg eps=1e-5 in the config')


def _read_checkpoint(path: str) -> object:
    """Unpickle ``path``; errors name the file and what it is not."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint {path} does not exist')
    if osp.getsize(path) == 0:
        raise ConversionError(f'{path} is empty (0 bytes), not a checkpoint')
    try:
        if path.endswith('.pkl'):
            with open(path, 'rb') as f:
                return pickle.load(f, encoding='latin1')
        return torch.load(path, map_location='cpu', weights_only=False)
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile,
            RuntimeError, UnicodeDecodeError, ValueError) as err:
        raise ConversionError(
            f'{path} is not a checkpoint that torch.load or pickle can read '
            f'({type(err).__name__}: {err}); pass the .pth / .pkl file the '
            'authors released') from None


def load_source_state_dict(path: str) -> 'OrderedDict[str, Tensor]':
    """Read a checkpoint: ``.pkl`` (pickle of numpy arrays, detectron2 style)
    or anything :func:`torch.load` reads (loaded with ``weights_only=False``:
    only use trusted files). A ``model`` or ``state_dict`` entry holding the
    tensors is unwrapped.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ConversionError: Not a checkpoint (empty, not a pickle, not a dict),
            or entries that are neither tensors nor numpy arrays.
    """
    obj = _read_checkpoint(path)
    for wrapper in ('state_dict', 'model'):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    if not isinstance(obj, Mapping):
        raise ConversionError(
            f'{path} holds a {type(obj).__name__}, not a state dict: a '
            'checkpoint is a dict of tensors (optionally under "model" or '
            '"state_dict")')
    tensors, bad = OrderedDict(), []
    for key, value in obj.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.ascontiguousarray(value))
        if isinstance(value, Tensor):
            tensors[key] = value
        else:
            bad.append(key)
    if bad:
        raise ConversionError(
            f'{path}: entries that are not tensors: {bad}')
    return tensors


def dataset_classes(cfg, num_classes: Optional[int]) -> Optional[tuple]:
    """Class names for ``meta.dataset_meta``: the test dataset's metainfo
    classes if the config sets them, else COCO's 80 in contiguous order."""
    try:
        classes = cfg.test_dataloader.dataset.metainfo.classes
    except (AttributeError, KeyError, TypeError):
        classes = None
    if classes is None and num_classes in (None, len(COCO_CLASSES)):
        classes = COCO_CLASSES
    return tuple(classes) if classes is not None else None


def panoptic_dataset_meta(cfg) -> Optional[dict]:
    """``meta.dataset_meta`` of a Panoptic-CenterMask config with COCO's 80
    thing and 53 stuff classes and no class names of its own: MMDetection's
    ``CocoPanopticDataset`` names (``classes``, ``thing_classes``,
    ``stuff_classes``); None for any other config."""
    model = cfg.model
    try:
        own_classes = cfg.test_dataloader.dataset.metainfo.classes
    except (AttributeError, KeyError, TypeError):
        own_classes = None
    if own_classes is not None or (model.get('num_classes'),
                                   model.get('num_stuff_classes')) != (80, 53):
        return None
    from mmdet.datasets import CocoPanopticDataset
    meta = CocoPanopticDataset.METAINFO
    return {
        key: tuple(meta[key])
        for key in ('classes', 'thing_classes', 'stuff_classes')
    }


def save_mmengine_checkpoint(result: Conversion,
                             dst: str,
                             config,
                             src: Optional[str] = None) -> dict:
    """Write ``{'state_dict', 'meta'}`` as ``tools/test.py`` expects.

    Returns:
        dict: The saved checkpoint.
    """
    cfg = load_config(config)
    num_classes = cfg.model.get('num_classes')
    meta = dict(
        converted_from=osp.abspath(src) if src else None,
        source_format=result.source_format,
        config=getattr(cfg, 'filename', None),
        created=datetime.datetime.now().isoformat(timespec='seconds'),
        dropped=list(result.dropped),
        added=[k for k, r in result.added if r != NUM_BATCHES_TRACKED_REASON],
        notes=list(result.notes))
    classes = dataset_classes(cfg, num_classes)
    if panoptic_dataset_meta(cfg) is not None:
        meta['dataset_meta'] = panoptic_dataset_meta(cfg)
    elif classes is not None:
        meta['dataset_meta'] = dict(classes=classes)
    try:
        from mmcentermask.version import __version__
        meta['mmcentermask_version'] = __version__
    except ImportError:  # pragma: no cover
        pass
    checkpoint = dict(state_dict=result.state_dict, meta=meta)
    torch.save(checkpoint, dst)
    return checkpoint
