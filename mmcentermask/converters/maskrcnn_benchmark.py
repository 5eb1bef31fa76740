"""Convert the original CenterMask checkpoints (maskrcnn-benchmark, "MB",
``youngwanLEE/CenterMask``) to an MMEngine checkpoint of mmcentermask's
:class:`CenterMask`.

Same engine as :mod:`.centermask2` (the target is the model built from the
config; leftover source keys, unfilled target keys and shape mismatches stop
the conversion with the list), with MB's key layout and value conventions:

===========================================  ===============  ====================================
maskrcnn-benchmark prefix / key              our prefix       table / transformation
===========================================  ===============  ====================================
``module.`` (DDP)                            --               stripped
``backbone.body.`` VoVNet                    ``backbone.``    :func:`~.vovnet.mb_vovnet_key_to_mmdet`
                                                              (DCN ``conv.offset`` / ``conv.conv``)
``backbone.body.`` ResNet / ResNeXt          ``backbone.``    :func:`mb_resnet_key_to_mmdet`
``backbone.body.`` MobileNetV2               ``backbone.``    :func:`~.centermask2.mobilenetv2_key_to_mmdet`
backbone FrozenBN ``running_var``            ``...running_var``  MB's FrozenBN has no eps:
                                                              stored as ``var - 1e-5`` (clamped > 0,
                                                              :func:`~.vovnet.fold_frozen_bn_eps`)
``backbone.fpn.fpn_inner{2,3,4}``            ``neck.lateral_convs.{0,1,2}.conv``
``backbone.fpn.fpn_layer{2,3,4}``            ``neck.fpn_convs.{0,1,2}.conv``
``backbone.fpn.top_blocks.p6`` / ``p7``      ``neck.fpn_convs.{3,4}.conv``
``rpn.head.``                                ``bbox_head.``   FCOS table (``centerness`` ->
                                                              ``conv_centerness``); scales () shape
``roi_heads.mask.feature_extractor.``        ``roi_head.mask_head.convs.{n-1}.conv``,
``mask_fcn{n}``, ``spatialAtt.conv``         ``.spatial_attention.conv``
``roi_heads.mask.predictor.conv5_mask``      ``roi_head.mask_head.upsample``
``roi_heads.mask.predictor.mask_fcn_logits`` ``roi_head.mask_head.conv_logits``  81 rows: row 0
                                                              (background) dropped
``roi_heads.maskiou.feature_extractor.``     ``roi_head.mask_iou_head.convs.{n-1}``,
``maskiou_fcn{n}``, ``maskiou_fc{n}``        ``.fcs.{n-1}``
``roi_heads.maskiou.predictor.maskiou``      ``roi_head.mask_iou_head.fc_mask_iou``  81 rows: row 0
                                                              dropped
===========================================  ===============  ====================================

MB class channel ``c + 1`` is COCO contiguous class ``c`` (category ids
sorted), the order of our 80 channels. Use the converted weights with a
config that switches the MB behaviours, e.g.
``configs/centermask/centermask_vovnet-v2-39_fpn_mb-ms-3x_coco.py``; its
header lists what is not reproduced. MB models trained without MaskIoU
(``MASKIOU_ON`` missing in some MB configs) have no ``roi_heads.maskiou``
keys and stop the conversion (our RoI head always has the MaskIoU head).
"""
import re
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np
from torch import Tensor

from .centermask2 import (MOBILENET_TYPES, RESNET_TYPES, VOVNET_TYPES,
                          Conversion, ConversionError, Part,
                          _apply_resnet_rules, _backbone_cfg, _extra_fill,
                          _prepare, _preprocessor_stats,
                          _reshape_to_target, mobilenetv2_key_to_mmdet,
                          run_parts, strip_module_prefix)
from .fcos import c2_fcos_head_key_to_mmdet
from .vovnet import BN_EPS, fold_frozen_bn_eps, mb_vovnet_key_to_mmdet

#: maskrcnn-benchmark's ``INPUT.PIXEL_MEAN`` (BGR, std 1) of every CenterMask
#: config.
MB_PIXEL_MEAN = (102.9801, 115.9465, 122.7717)

# (pattern, template, is_norm)
_MB_RESNET_RULES = tuple(
    (re.compile(pattern), template, is_norm)
    for pattern, template, is_norm in (
        (r'stem\.conv1\.weight', 'conv1.weight', False),
        (r'stem\.bn1\.(?P<p>\w+)', 'bn1.{p}', True),
        (r'layer(?P<L>[1-4])\.(?P<j>\d+)\.conv(?P<k>[13])\.weight',
         'layer{L}.{j}.conv{k}.weight', False),
        (r'layer(?P<L>[1-4])\.(?P<j>\d+)\.conv2\.weight',
         'layer{L}.{j}.conv2.weight', False),
        (r'layer(?P<L>[1-4])\.(?P<j>\d+)\.conv2\.conv\.weight',
         'layer{L}.{j}.conv2.weight', False),
        (r'layer(?P<L>[1-4])\.(?P<j>\d+)\.conv2\.offset\.(?P<p>weight|bias)',
         'layer{L}.{j}.conv2.conv_offset.{p}', False),
        (r'layer(?P<L>[1-4])\.(?P<j>\d+)\.bn(?P<k>[123])\.(?P<p>\w+)',
         'layer{L}.{j}.bn{k}.{p}', True),
        (r'layer(?P<L>[1-4])\.(?P<j>\d+)\.downsample\.0\.weight',
         'layer{L}.{j}.downsample.0.weight', False),
        (r'layer(?P<L>[1-4])\.(?P<j>\d+)\.downsample\.1\.(?P<p>\w+)',
         'layer{L}.{j}.downsample.1.{p}', True),
    ))


def mb_resnet_key_to_mmdet(key: str) -> str:
    """mmdet ``ResNet`` / ``ResNeXt`` key of a maskrcnn-benchmark ResNet key
    (without ``backbone.body.``): ``stem.conv1`` / ``stem.bn1`` ->
    ``conv1`` / ``bn1``; ``layer*`` names are mmdet's already; DCN
    ``conv2.conv.weight`` / ``conv2.offset.*`` -> ``conv2.weight`` /
    ``conv2.conv_offset.*``.

    Example:
        >>> mb_resnet_key_to_mmdet('stem.bn1.running_var')
        'bn1.running_var'

    Raises:
        KeyError: Not a maskrcnn-benchmark ResNet key.
    """
    return _apply_resnet_rules(key, _MB_RESNET_RULES, 'maskrcnn-benchmark')


_MB_FPN = re.compile(r'fpn_(?P<kind>inner|layer)(?P<i>\d)\.(?P<p>weight|bias)')
_MB_TOP = re.compile(r'top_blocks\.p(?P<level>[67])\.(?P<p>weight|bias)')


def mb_fpn_key_to_mmdet(key: str, num_ins: int = 3) -> str:
    """mmdet ``FPN`` key of a maskrcnn-benchmark FPN key (without
    ``backbone.fpn.``). MB numbers its FPN convs by the position in
    ``in_channels_list = [0, C3, C4, C5]`` starting at 1; the 0-channel
    stage2 entry is skipped, so ``fpn_inner2`` is the C3 lateral.

    Example:
        >>> mb_fpn_key_to_mmdet('fpn_layer4.bias')
        'fpn_convs.2.conv.bias'

    Raises:
        KeyError: Not an FPN key of this layout.
    """
    match = _MB_FPN.fullmatch(key)
    if match and 0 <= int(match['i']) - 2 < num_ins:
        module = 'lateral_convs' if match['kind'] == 'inner' else 'fpn_convs'
        return f"{module}.{int(match['i']) - 2}.conv.{match['p']}"
    match = _MB_TOP.fullmatch(key)
    if match:
        return (f"fpn_convs.{num_ins + int(match['level']) - 6}.conv."
                f"{match['p']}")
    raise KeyError(f'no maskrcnn-benchmark FPN mapping for key {key!r}')


_MB_MASK_RULES = tuple(
    (re.compile(pattern), template) for pattern, template in (
        (r'mask\.feature_extractor\.mask_fcn(?P<n>\d+)\.(?P<p>weight|bias)',
         'mask_head.convs.{i}.conv.{p}'),
        (r'mask\.feature_extractor\.spatialAtt\.conv\.(?P<p>weight)',
         'mask_head.spatial_attention.conv.{p}'),
        (r'mask\.predictor\.conv5_mask\.(?P<p>weight|bias)',
         'mask_head.upsample.{p}'),
        (r'mask\.predictor\.mask_fcn_logits\.(?P<p>weight|bias)',
         'mask_head.conv_logits.{p}'),
        (r'maskiou\.feature_extractor\.maskiou_fcn(?P<n>\d+)\.'
         r'(?P<p>weight|bias)', 'mask_iou_head.convs.{i}.{p}'),
        (r'maskiou\.feature_extractor\.maskiou_fc(?P<n>\d+)\.'
         r'(?P<p>weight|bias)', 'mask_iou_head.fcs.{i}.{p}'),
        (r'maskiou\.predictor\.maskiou\.(?P<p>weight|bias)',
         'mask_iou_head.fc_mask_iou.{p}'),
    ))

#: our predictor keys whose MB tensors carry a background row 0
BACKGROUND_ROW_KEYS = ('mask_head.conv_logits.', 'mask_iou_head.fc_mask_iou.')


def mb_mask_branch_key_to_mmdet(key: str) -> str:
    """Our RoI-head key of a maskrcnn-benchmark mask-branch key (without
    ``roi_heads.``).

    Example:
        >>> mb_mask_branch_key_to_mmdet('mask.predictor.conv5_mask.weight')
        'mask_head.upsample.weight'

    Raises:
        KeyError: Not a mask / MaskIoU branch key of this layout.
    """
    for pattern, template in _MB_MASK_RULES:
        match = pattern.fullmatch(key)
        if match is None:
            continue
        groups = match.groupdict()
        layer = int(groups.pop('n')) - 1 if 'n' in groups else None
        return template.format(i=layer, **groups)
    raise KeyError(f'no maskrcnn-benchmark mask-branch mapping for {key!r}')


def _drop_background_row(key: str, value: Tensor, target: Tensor) -> Tensor:
    """MB predictors have 81 rows (row 0 = background, never trained)."""
    if not key.startswith(tuple('roi_head.' + k for k in BACKGROUND_ROW_KEYS)):
        return value
    if value.shape[0] != target.shape[0] + 1:
        raise ConversionError(
            f'{key}: maskrcnn-benchmark predictors have num_classes + 1 rows '
            f'(row 0 = background), got {value.shape[0]} rows for a target '
            f'with {target.shape[0]} classes')
    return value[1:].clone()


def mb_backbone_part(backbone_cfg: dict) -> Tuple[Part, Dict[str, int]]:
    """Part table of ``backbone.body.`` with the FrozenBN eps fold, and the
    counters (``folded``, ``clamped``) the fold updates while converting."""
    kind = backbone_cfg['type']
    if kind in VOVNET_TYPES:
        key_fn = mb_vovnet_key_to_mmdet
    elif kind in RESNET_TYPES:
        key_fn = mb_resnet_key_to_mmdet
    elif kind in MOBILENET_TYPES:
        key_fn = mobilenetv2_key_to_mmdet
    else:
        raise ConversionError(
            f'no maskrcnn-benchmark key table for backbone type {kind!r}; '
            f'known: {VOVNET_TYPES + RESNET_TYPES + MOBILENET_TYPES}')
    counts = dict(folded=0, clamped=0)

    def fold(key: str, value: Tensor, target: Tensor) -> Tensor:
        if not key.endswith('.running_var'):
            return value
        folded, clamped = fold_frozen_bn_eps(value.float(), BN_EPS)
        counts['folded'] += 1
        counts['clamped'] += clamped
        return folded.to(value.dtype)

    return Part('backbone', 'backbone.body.', 'backbone.', key_fn,
                fold), counts


def mb_parts(cfg) -> Tuple[List[Part], Dict[str, int]]:
    """The part tables of a maskrcnn-benchmark CenterMask checkpoint and the
    eps-fold counters of the backbone part."""
    num_ins = len(cfg.model.neck['in_channels'])
    backbone, counts = mb_backbone_part(_backbone_cfg(cfg))
    return [
        backbone,
        Part('fpn', 'backbone.fpn.', 'neck.',
             lambda k: mb_fpn_key_to_mmdet(k, num_ins=num_ins)),
        Part('fcos', 'rpn.head.', 'bbox_head.', c2_fcos_head_key_to_mmdet,
             _reshape_to_target),
        Part('mask_branch', 'roi_heads.', 'roi_head.',
             mb_mask_branch_key_to_mmdet, _drop_background_row),
    ], counts


def convert_maskrcnn_benchmark(
        source: Mapping[str, Tensor],
        config,
        target: Optional[Mapping[str, Tensor]] = None) -> Conversion:
    """Convert a maskrcnn-benchmark CenterMask ``model`` state dict.

    Args:
        source (Mapping[str, Tensor]): MB state dict, ``module.``-prefixed
            or not.
        config (str | Config | dict): mmcentermask config of the target.
        target (Mapping[str, Tensor], optional): Target state dict (skips
            building the model and its BN eps check).

    Returns:
        Conversion: Converted state dict and bookkeeping; ``notes`` records
        the eps fold, the dropped background rows and a pixel-mean warning
        when the config does not normalise like MB.

    Raises:
        ConversionError: Leftover source keys, unfilled target keys, shape
            mismatches or predictors without the background row.
    """
    cfg, target, notes = _prepare(config, target)
    source = strip_module_prefix(source)
    result = Conversion(OrderedDict(), 'maskrcnn_benchmark', notes=notes)
    parts, counts = mb_parts(cfg)
    run_parts(
        source, parts, target, result, extra_fill=_extra_fill(cfg, target))
    result.notes.append(
        f"folded the eps-free FrozenBN of {counts['folded']} backbone norms "
        f"(running_var - {BN_EPS}); {counts['clamped']} variances <= "
        f'{BN_EPS} clamped (not reproducible)')
    result.notes.append('dropped background row 0 of mask_fcn_logits and '
                        'maskiou (81 -> 80 classes)')
    mean = _preprocessor_stats(cfg)['pixel_mean']
    if mean is None or not np.allclose(mean, MB_PIXEL_MEAN, atol=1e-3):
        result.notes.append(
            f'WARNING: the config normalises with mean {mean}; '
            'maskrcnn-benchmark models were trained with '
            f'{list(MB_PIXEL_MEAN)} (see configs/centermask/'
            'centermask_vovnet-v2-39_fpn_mb-ms-3x_coco.py)')
    return result


__all__ = [
    'MB_PIXEL_MEAN', 'mb_resnet_key_to_mmdet', 'mb_fpn_key_to_mmdet',
    'mb_mask_branch_key_to_mmdet', 'mb_parts', 'convert_maskrcnn_benchmark'
]
