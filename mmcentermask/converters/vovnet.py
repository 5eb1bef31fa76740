"""Convert VoVNet ImageNet backbones of the authors' code and of timm to
the keys of :class:`mmcentermask.models.backbones.VoVNet`.

Source formats: ``'centermask2'`` (centermask2 and vovnet-detectron2),
``'maskrcnn_benchmark'`` (the original CenterMask: same names, DCN layers
differ, FrozenBN without eps) and ``'timm'`` (``ese_vovnet*`` /
``vovnet*a``). The key tables are in :mod:`.key_tables.vovnet`.

ImageNet classifier keys ``fc.*``, ``head.*`` and ``classifier.*`` are
dropped and counted. Optional prefixes ``module.`` and
``backbone.bottom_up.`` (centermask2 detector) or ``backbone.body.``
(maskrcnn-benchmark detector) are stripped first. The DCN offset-conv layout
of both authors' codes equals mmcv ``ModulatedDeformConv2dPack`` (27
channels: 18 offsets, then 9 mask logits), so offset convs copy unchanged.
Norm buffers ``num_batches_tracked`` are added (0) where the source has
running statistics but no counter (FrozenBN), so the result loads with
``strict=True``.

Every source key must be mapped or be a classifier key, otherwise the
conversion stops with a :class:`~.engine.ConversionError` listing the unknown
keys; with a ``reference`` state dict (e.g. ``VoVNet(arch).state_dict()``)
missing keys, extra keys and shape mismatches stop it too.
"""
from collections import OrderedDict
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

from torch import Tensor

from .engine import (MODULE_PREFIX, Conversion, ConversionError, Part,
                     fold_frozen_bn_eps, run_parts)
from .key_tables.vovnet import (centermask2_vovnet_key_to_mmdet,
                                maskrcnn_benchmark_vovnet_key_to_mmdet,
                                timm_vovnet_key_to_mmdet)

#: Detector backbone prefixes stripped before mapping.
BACKBONE_PREFIXES: Tuple[str, ...] = ('backbone.bottom_up.', 'backbone.body.')
#: Classifier keys of ImageNet checkpoints, dropped (and counted).
CLASSIFIER_PREFIXES: Tuple[str, ...] = ('fc.', 'head.', 'classifier.')
CLASSIFIER_REASON = 'ImageNet classifier, not part of the backbone'
KEY_MAPPERS: Dict[str, Callable[[str], str]] = {
    'centermask2': centermask2_vovnet_key_to_mmdet,
    'maskrcnn_benchmark': maskrcnn_benchmark_vovnet_key_to_mmdet,
    'timm': timm_vovnet_key_to_mmdet,
}
SOURCE_FORMATS: Tuple[str, ...] = tuple(KEY_MAPPERS)


def strip_prefixes(key: str) -> str:
    """Remove ``module.`` and then one detector backbone prefix."""
    if key.startswith(MODULE_PREFIX):
        key = key[len(MODULE_PREFIX):]
    for prefix in BACKBONE_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def detect_vovnet_format(keys: Sequence[str]) -> str:
    """Guess the source layout: ``'timm'`` (``stages.`` keys),
    ``'maskrcnn_benchmark'`` (``backbone.body.`` prefix or its DCN keys) or
    ``'centermask2'`` (``/`` names).

    maskrcnn-benchmark ImageNet files use exactly the centermask2 names and
    are detected as ``'centermask2'`` (same mapping); pass
    ``'maskrcnn_benchmark'`` explicitly to fold the eps.

    Raises:
        ConversionError: None of the layouts fits.
    """
    stripped = [strip_prefixes(k) for k in keys]
    if any(k.startswith('stages.') for k in stripped):
        return 'timm'
    mb_prefixes = ('backbone.body.', MODULE_PREFIX + 'backbone.body.')
    if any(k.startswith(mb_prefixes)
           for k in keys) or any('/conv.conv.' in k or '/conv.offset.' in k
                                 for k in stripped):
        return 'maskrcnn_benchmark'
    if any('/' in k for k in stripped):
        return 'centermask2'
    raise ConversionError('Cannot tell the VoVNet checkpoint layout '
                          '(centermask2, maskrcnn_benchmark or '
                          f'timm) from keys such as {list(keys)[:5]}')


def _convert(state_dict: Mapping[str, Tensor],
             source_format: str,
             reference: Optional[Mapping[str, Tensor]] = None,
             fold_eps: bool = False) -> Conversion:
    result = Conversion(OrderedDict(), source_format)
    source = OrderedDict()
    for src_key, value in state_dict.items():
        key = strip_prefixes(src_key)
        if key.startswith(CLASSIFIER_PREFIXES):
            result.dropped.append((src_key, CLASSIFIER_REASON))
        else:
            source[key] = value

    def fold(key: str, value: Tensor, target: Optional[Tensor]) -> Tensor:
        if not key.endswith('.running_var'):
            return value
        folded, clamped = fold_frozen_bn_eps(value)
        result.num_clamped += clamped
        return folded

    part = Part('backbone', '', '', KEY_MAPPERS[source_format],
                fold if fold_eps else None)
    return run_parts(source, [part], reference, result)


def convert_centermask2_vovnet(
        state_dict: Mapping[str, Tensor],
        reference: Optional[Mapping[str, Tensor]] = None) -> Conversion:
    """Convert a centermask2 / vovnet-detectron2 VoVNet state dict (bare keys
    or ``backbone.bottom_up.`` prefixed).

    Args:
        state_dict (Mapping[str, Tensor]): Source tensors.
        reference (Mapping[str, Tensor], optional): Target state dict to check
            the result against. Defaults to None (no check).

    Raises:
        ConversionError: Unknown source keys, or a mismatch with
            ``reference``.
    """
    return _convert(state_dict, 'centermask2', reference)


def convert_maskrcnn_benchmark_vovnet(state_dict: Mapping[str, Tensor],
                      reference: Optional[Mapping[str, Tensor]] = None,
                      fold_eps: bool = False) -> Conversion:
    """Convert a maskrcnn-benchmark CenterMask VoVNet state dict (bare keys,
    ``backbone.body.`` and/or ``module.`` prefixed).

    Args:
        state_dict (Mapping[str, Tensor]): Source tensors.
        reference (Mapping[str, Tensor], optional): Target state dict to check
            the result against. Defaults to None.
        fold_eps (bool): Store ``running_var - 1e-5`` (clamped > 0) so that
            mmcentermask's BN (eps 1e-5) reproduces maskrcnn-benchmark's eps-free
            FrozenBN,
            see :func:`fold_frozen_bn_eps`. Defaults to False (keep the
            statistics as they are; the outputs then differ slightly).

    Raises:
        ConversionError: Unknown source keys, or a mismatch with
            ``reference``.
    """
    return _convert(state_dict, 'maskrcnn_benchmark', reference, fold_eps)


def convert_timm_vovnet(
        state_dict: Mapping[str, Tensor],
        reference: Optional[Mapping[str, Tensor]] = None) -> Conversion:
    """Convert a timm ``ese_vovnet*`` / ``vovnet*a`` state dict. The result
    fits ``VoVNet(arch, ese_last_only=True)`` (timm has eSE only in the last
    OSA module of a stage).

    Raises:
        ConversionError: Unknown source keys, or a mismatch with
            ``reference``.
    """
    return _convert(state_dict, 'timm', reference)


def convert_vovnet_state_dict(state_dict: Mapping[str, Tensor],
                              source_format: str = 'auto',
                              reference: Optional[Mapping[str, Tensor]] = None,
                              fold_eps: bool = False) -> Conversion:
    """Dispatch to the converter of ``source_format``.

    Args:
        state_dict (Mapping[str, Tensor]): Source tensors.
        source_format (str): ``'centermask2'``, ``'maskrcnn_benchmark'``,
            ``'timm'`` or ``'auto'``
            (:func:`detect_vovnet_format`). Defaults to ``'auto'``.
        reference (Mapping[str, Tensor], optional): Target state dict to check
            against. Defaults to None.
        fold_eps (bool): maskrcnn-benchmark only, see
            :func:`convert_maskrcnn_benchmark_vovnet`.

    Raises:
        ConversionError: Unknown format, ``fold_eps`` with another source, unknown
            source keys or a mismatch with ``reference``.
    """
    if source_format == 'auto':
        source_format = detect_vovnet_format(list(state_dict))
    if source_format not in SOURCE_FORMATS:
        raise ConversionError(
            f'source_format must be one of {SOURCE_FORMATS} or '
            f"'auto', got {source_format!r}")
    if fold_eps and source_format != 'maskrcnn_benchmark':
        raise ConversionError(
            'fold_eps applies to maskrcnn_benchmark checkpoints only, not '
            f'{source_format!r}')
    return _convert(state_dict, source_format, reference, fold_eps)
