"""Convert the original CenterMask checkpoints (maskrcnn-benchmark, "MB",
``youngwanLEE/CenterMask``) to an MMEngine checkpoint of mmcentermask's
:class:`CenterMask`.

Same engine (:mod:`.engine`) as :mod:`.centermask2` (the target is the model built from the
config; leftover source keys, unfilled target keys and shape mismatches stop
the conversion with the list), with MB's key layout and value conventions:

===========================================  ===============  ====================================
maskrcnn-benchmark prefix / key              our prefix       table / transformation
===========================================  ===============  ====================================
``module.`` (DDP)                            --               stripped
``backbone.body.`` VoVNet                    ``backbone.``    :func:`~.key_tables.vovnet.maskrcnn_benchmark_vovnet_key_to_mmdet`
                                                              (DCN ``conv.offset`` / ``conv.conv``)
``backbone.body.`` ResNet / ResNeXt          ``backbone.``    :func:`~.key_tables.resnet.maskrcnn_benchmark_resnet_key_to_mmdet`
``backbone.body.`` MobileNetV2               ``backbone.``    :func:`~.key_tables.mobilenet_v2.mobilenetv2_key_to_mmdet`
backbone FrozenBN ``running_var``            ``...running_var``  MB's FrozenBN has no eps:
                                                              stored as ``var - 1e-5`` (clamped > 0,
                                                              :func:`~.engine.fold_frozen_bn_eps`)
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
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np
from torch import Tensor

from .centermask2 import (VOVNET_TYPES, mobilenet_extra_fill,
                          preprocessor_stats, reshape_to_target)
from .checkpoint_io import load_config, target_state_dict
from .engine import (FROZEN_BN_EPS, Conversion, ConversionError, Part,
                     fold_frozen_bn_eps, run_parts, strip_module_prefix)
from .key_tables.fcos_head import fcos_head_key_to_mmdet
from .key_tables.fpn import maskrcnn_benchmark_fpn_key_to_mmdet
from .key_tables.mask_branch import (
    BACKGROUND_ROW_KEYS, maskrcnn_benchmark_mask_branch_key_to_mmdet)
from .key_tables.mobilenet_v2 import MOBILENET_TYPES, mobilenetv2_key_to_mmdet
from .key_tables.resnet import (RESNET_TYPES,
                                maskrcnn_benchmark_resnet_key_to_mmdet)
from .key_tables.vovnet import maskrcnn_benchmark_vovnet_key_to_mmdet

#: maskrcnn-benchmark's ``INPUT.PIXEL_MEAN`` (BGR, std 1) of every CenterMask
#: config.
MB_PIXEL_MEAN = (102.9801, 115.9465, 122.7717)


def drop_background_row(key: str, value: Tensor,
                        target: Optional[Tensor]) -> Tensor:
    """MB predictors have 81 rows (row 0 = background, never trained)."""
    if not key.startswith(tuple('roi_head.' + k for k in BACKGROUND_ROW_KEYS)):
        return value
    if target is None or value.shape[0] != target.shape[0] + 1:
        raise ConversionError(
            f'{key}: maskrcnn-benchmark predictors have num_classes + 1 rows '
            f'(row 0 = background), got {value.shape[0]} rows for a target '
            f'with {None if target is None else target.shape[0]} classes')
    return value[1:].clone()


def maskrcnn_benchmark_backbone_part(backbone_cfg: dict) -> Tuple[Part, Dict[str, int]]:
    """Part table of ``backbone.body.`` with the FrozenBN eps fold, and the
    counters (``folded``, ``clamped``) the fold updates while converting."""
    kind = backbone_cfg['type']
    if kind in VOVNET_TYPES:
        key_fn = maskrcnn_benchmark_vovnet_key_to_mmdet
    elif kind in RESNET_TYPES:
        key_fn = maskrcnn_benchmark_resnet_key_to_mmdet
    elif kind in MOBILENET_TYPES:
        key_fn = mobilenetv2_key_to_mmdet
    else:
        raise ConversionError(
            f'no maskrcnn-benchmark key table for backbone type {kind!r}; '
            f'known: {VOVNET_TYPES + RESNET_TYPES + MOBILENET_TYPES}')
    counts = dict(folded=0, clamped=0)

    def fold(key: str, value: Tensor, target: Optional[Tensor]) -> Tensor:
        if not key.endswith('.running_var'):
            return value
        folded, clamped = fold_frozen_bn_eps(value.float(), FROZEN_BN_EPS)
        counts['folded'] += 1
        counts['clamped'] += clamped
        return folded.to(value.dtype)

    return Part('backbone', 'backbone.body.', 'backbone.', key_fn,
                fold), counts


def maskrcnn_benchmark_parts(cfg) -> Tuple[List[Part], Dict[str, int]]:
    """The part tables of a maskrcnn-benchmark CenterMask checkpoint and the
    eps-fold counters of the backbone part."""
    num_ins = len(cfg.model.neck['in_channels'])
    backbone, counts = maskrcnn_benchmark_backbone_part(cfg.model.backbone)
    return [
        backbone,
        Part('fpn', 'backbone.fpn.', 'neck.',
             lambda k: maskrcnn_benchmark_fpn_key_to_mmdet(k, num_ins=num_ins)),
        Part('fcos', 'rpn.head.', 'bbox_head.', fcos_head_key_to_mmdet,
             reshape_to_target),
        Part('mask_branch', 'roi_heads.', 'roi_head.',
             maskrcnn_benchmark_mask_branch_key_to_mmdet, drop_background_row),
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
    cfg = load_config(config)
    if target is None:
        target = target_state_dict(cfg)
    source = strip_module_prefix(source)
    result = Conversion(OrderedDict(), 'maskrcnn_benchmark')
    parts, counts = maskrcnn_benchmark_parts(cfg)
    run_parts(
        source,
        parts,
        target,
        result,
        extra_fill=mobilenet_extra_fill(cfg, target))
    result.num_clamped = counts['clamped']
    result.notes.append(
        f"folded the eps-free FrozenBN of {counts['folded']} backbone norms "
        f"(running_var - {FROZEN_BN_EPS}); {counts['clamped']} variances <= "
        f'{FROZEN_BN_EPS} clamped (not reproducible)')
    result.notes.append('dropped background row 0 of mask_fcn_logits and '
                        'maskiou (81 -> 80 classes)')
    mean = preprocessor_stats(cfg)['pixel_mean']
    if mean is None or not np.allclose(mean, MB_PIXEL_MEAN, atol=1e-3):
        result.notes.append(
            f'WARNING: the config normalises with mean {mean}; '
            'maskrcnn-benchmark models were trained with '
            f'{list(MB_PIXEL_MEAN)} (see configs/centermask/'
            'centermask_vovnet-v2-39_fpn_mb-ms-3x_coco.py)')
    return result
