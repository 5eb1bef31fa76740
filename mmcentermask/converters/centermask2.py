"""Convert a whole centermask2 (detectron2) CenterMask checkpoint to an
MMEngine checkpoint of mmcentermask's :class:`CenterMask`.

The conversion is driven by the *target*: the model built from an
mmcentermask config. Every source key must be claimed by exactly one part
table below and every target key must be filled, otherwise
:class:`ConversionError` lists the problems and nothing is written.

Part tables (source prefix -> target prefix, key function):

=====================================  ====================  =========================================
centermask2 prefix                     our prefix            key table
=====================================  ====================  =========================================
``backbone.bottom_up.`` (VoVNet)       ``backbone.``         :func:`~.key_tables.vovnet.centermask2_vovnet_key_to_mmdet`
``backbone.bottom_up.`` (ResNet/X)     ``backbone.``         :func:`~.key_tables.resnet.centermask2_resnet_key_to_mmdet`
``backbone.bottom_up.`` (MobileNetV2)  ``backbone.``         :func:`~.key_tables.mobilenet_v2.mobilenetv2_key_to_mmdet`
``backbone.`` (FPN, P6/P7)             ``neck.``             :func:`~.key_tables.fpn.centermask2_fpn_key_to_mmdet`
                                                             (P3-P5 inputs, or P2-P5 for Panoptic-CenterMask)
``proposal_generator.fcos_head.``      ``bbox_head.``        ``fcos_head_key_to_mmdet`` (FCOS head
                                                             module); ``scales.{l}.scale`` (1, ) -> ()
``roi_heads.mask_head.``,              ``roi_head.``         :func:`~.key_tables.mask_branch.centermask2_mask_branch_key_to_mmdet`
``roi_heads.maskiou_head.``
``sem_seg_head.``                      ``semantic_head.``    :func:`~.key_tables.semantic_head.centermask2_semantic_head_key_to_mmdet`;
(Panoptic-CenterMask)                                        predictor rows: "things" moved from first to last
``pixel_mean``, ``pixel_std``          (dropped)             checked against the config's
                                                             ``data_preprocessor`` mean / std first
=====================================  ====================  =========================================

The key tables live in :mod:`mmcentermask.converters.key_tables`.

FrozenBN buffers (``weight, bias, running_mean, running_var``) copy onto
mmdet ``BN`` layers, whose eps must be detectron2's 1e-5 (checked);
``num_batches_tracked`` counters are filled with 0.

Loading: ``.pth`` / ``.pkl`` files with or without a ``model`` entry (see
:func:`~.checkpoint_io.load_source_state_dict`); a leading ``module.`` is
stripped. Only convert files you trust (``.pth`` is unpickled).
"""
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np
from torch import Tensor

from .checkpoint_io import load_config, target_state_dict
from .engine import (Conversion, ConversionError, Part, run_parts,
                     strip_module_prefix)
from .key_tables.fcos_head import fcos_head_key_to_mmdet
from .key_tables.fpn import centermask2_fpn_key_to_mmdet
from .key_tables.mask_branch import centermask2_mask_branch_key_to_mmdet
from .key_tables.mobilenet_v2 import (MNV2_CONV2_REASON, MOBILENET_TYPES,
                                      mobilenetv2_conv2_fill,
                                      mobilenetv2_key_to_mmdet)
from .key_tables.resnet import RESNET_TYPES, centermask2_resnet_key_to_mmdet
from .key_tables.semantic_head import (PREDICTOR_KEYS,
                                       centermask2_semantic_head_key_to_mmdet,
                                       things_row_last)
from .key_tables.vovnet import centermask2_vovnet_key_to_mmdet

#: Backbone types with a key table.
VOVNET_TYPES = ('VoVNet', )
#: FPN level of the last backbone input (C5) in every centermask2 config.
FPN_LAST_INPUT_LEVEL = 5
#: source prefix of the semantic head of a Panoptic-CenterMask checkpoint
SEMANTIC_SRC_PREFIX = 'sem_seg_head.'
SEMANTIC_DST_PREFIX = 'semantic_head.'


def reshape_to_target(key: str, value: Tensor, target: Optional[Tensor]) -> Tensor:
    """FCOS ``Scale``: the authors store shape (1, ), mmcv ``Scale`` ()."""
    if target is not None and value.numel() == target.numel() == 1:
        return value.reshape(target.shape)
    return value


def preprocessor_stats(cfg) -> Dict[str, Optional[List[float]]]:
    """``pixel_mean`` / ``pixel_std`` of the config's data preprocessor."""
    pre = cfg.model.get('data_preprocessor') or {}
    return dict(
        pixel_mean=list(pre['mean']) if pre.get('mean') is not None else None,
        pixel_std=list(pre['std']) if pre.get('std') is not None else None)


def check_pixel_stats(source: Mapping[str, Tensor],
                      cfg,
                      atol: float = 1e-3) -> List[Tuple[str, str]]:
    """Compare ``pixel_mean`` / ``pixel_std`` buffers of the source with the
    config's ``data_preprocessor`` mean / std.

    Returns:
        list[tuple[str, str]]: The checked keys with the drop reason.

    Raises:
        ConversionError: A buffer differs from the config (or the config
            has no value to compare with); the message names both.
    """
    expected = preprocessor_stats(cfg)
    dropped = []
    for key, config_value in expected.items():
        if key not in source:
            continue
        stored = [float(v) for v in source[key].reshape(-1).tolist()]
        if config_value is None or len(stored) != len(config_value) or \
                not np.allclose(stored, config_value, rtol=0, atol=atol):
            name = 'mean' if key == 'pixel_mean' else 'std'
            raise ConversionError(
                f'checkpoint {key} = {stored} but the config normalises with '
                f'data_preprocessor.{name} = {config_value}: the model was '
                'trained with other pixel statistics (fix the config)')
        dropped.append((key, f'matches data_preprocessor '
                        f'{"mean" if key == "pixel_mean" else "std"} '
                        f'{config_value}; not a model parameter in mmdet'))
    return dropped


def mobilenet_extra_fill(cfg, target: Mapping[str, Tensor]) -> Dict[str, tuple]:
    """Target keys the authors' MobileNetV2 lacks, with value and reason."""
    backbone_cfg = cfg.model.backbone
    if backbone_cfg['type'] not in MOBILENET_TYPES:
        return {}
    return {
        k: (v, MNV2_CONV2_REASON)
        for k, v in mobilenetv2_conv2_fill(target, backbone_cfg).items()
    }


def centermask2_backbone_part(backbone_cfg: dict) -> Part:
    """Part table of the ``backbone.bottom_up.`` keys for the config's
    backbone type."""
    kind = backbone_cfg['type']
    if kind in VOVNET_TYPES:
        key_fn = centermask2_vovnet_key_to_mmdet
    elif kind in RESNET_TYPES:
        key_fn = centermask2_resnet_key_to_mmdet
    elif kind in MOBILENET_TYPES:
        key_fn = mobilenetv2_key_to_mmdet
    else:
        raise ConversionError(
            f'no centermask2 key table for backbone type {kind!r}; known: '
            f'{VOVNET_TYPES + RESNET_TYPES + MOBILENET_TYPES}')
    return Part('backbone', 'backbone.bottom_up.', 'backbone.', key_fn)


def semantic_predictor_to_ours(key: str, value: Tensor,
                               target: Optional[Tensor]) -> Tensor:
    """The 1x1 predictor of the semantic head in our class layout (stuff
    first, "things" last); the other tensors copy unchanged."""
    if key[len(SEMANTIC_DST_PREFIX):] in PREDICTOR_KEYS:
        return things_row_last(value)
    return value


def centermask2_semantic_part(first_level: int) -> Part:
    """Part table of the ``sem_seg_head.`` keys (Panoptic-CenterMask)."""
    return Part(
        'semantic_head', SEMANTIC_SRC_PREFIX, SEMANTIC_DST_PREFIX,
        lambda k: centermask2_semantic_head_key_to_mmdet(k, first_level),
        semantic_predictor_to_ours)


def centermask2_parts(cfg) -> List[Part]:
    """The part tables of a centermask2 checkpoint for this config: the
    instance model, plus the semantic head when the config has one."""
    num_ins = len(cfg.model.neck['in_channels'])
    first_level = FPN_LAST_INPUT_LEVEL + 1 - num_ins
    parts = [
        centermask2_backbone_part(cfg.model.backbone),
        Part('fpn', 'backbone.', 'neck.',
             lambda k: centermask2_fpn_key_to_mmdet(
                 k, num_ins=num_ins, first_level=first_level)),
        Part('fcos', 'proposal_generator.fcos_head.', 'bbox_head.',
             fcos_head_key_to_mmdet, reshape_to_target),
        Part('mask_branch', 'roi_heads.', 'roi_head.',
             centermask2_mask_branch_key_to_mmdet),
    ]
    semantic_cfg = cfg.model.get('semantic_head')
    if semantic_cfg is not None:
        parts.append(
            centermask2_semantic_part(first_level +
                                      semantic_cfg.get('start_level', 0)))
    return parts


def check_panoptic_match(source: Mapping[str, Tensor], cfg) -> None:
    """A Panoptic-CenterMask checkpoint needs a panoptic config and the
    other way round.

    Raises:
        ConversionError: Naming which of the two is panoptic and the fix.
    """
    source_panoptic = any(k.startswith(SEMANTIC_SRC_PREFIX) for k in source)
    config_panoptic = cfg.model.get('semantic_head') is not None
    if source_panoptic and not config_panoptic:
        raise ConversionError(
            'the checkpoint is a Panoptic-CenterMask (it has sem_seg_head.* '
            f'keys) but the config builds {cfg.model.get("type")} without a '
            'semantic head; convert it with a config of '
            'configs/centermask-panoptic/.')
    if config_panoptic and not source_panoptic:
        raise ConversionError(
            f'the config builds {cfg.model.get("type")} with a semantic head '
            'but the checkpoint has no sem_seg_head.* keys (an instance-only '
            'CenterMask checkpoint, or a partial file); convert it with a '
            'config of configs/centermask/, or give the Panoptic-CenterMask '
            'checkpoint.')


def convert_centermask2(
        source: Mapping[str, Tensor],
        config,
        target: Optional[Mapping[str, Tensor]] = None) -> Conversion:
    """Convert a centermask2 ``model`` state dict for ``config``.

    Args:
        source (Mapping[str, Tensor]): centermask2 state dict (tensors or
            numpy arrays), optionally ``module.``-prefixed.
        config (str | Config | dict): mmcentermask config (path or object)
            whose model is the target.
        target (Mapping[str, Tensor], optional): State dict of the target
            model, to skip building it (the BN eps check is skipped then).

    Returns:
        Conversion: The converted state dict (target key order) and the
        bookkeeping.

    Raises:
        ConversionError: Pixel statistics that contradict the config,
            leftover source keys, unfilled target keys or shape mismatches.
    """
    cfg = load_config(config)
    if target is None:
        target = target_state_dict(cfg)
    source = strip_module_prefix(source)
    check_panoptic_match(source, cfg)
    result = Conversion(OrderedDict(), 'centermask2')
    result.dropped.extend(check_pixel_stats(source, cfg))
    if cfg.model.get('semantic_head') is not None:
        result.notes.append(
            'semantic head predictor: detectron2 row 0 ("things") moved to '
            'the last row (stuff classes first, as MMDetection)')
    return run_parts(
        source,
        centermask2_parts(cfg),
        target,
        result,
        extra_fill=mobilenet_extra_fill(cfg, target),
        skip=[k for k, _ in result.dropped])
