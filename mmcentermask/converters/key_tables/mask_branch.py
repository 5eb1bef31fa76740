"""Mask-branch key tables: the SAG-Mask and MaskIoU heads of centermask2
(``roi_heads.mask_head.*``, ``roi_heads.maskiou_head.*``) and of
maskrcnn-benchmark (``roi_heads.mask.*``, ``roi_heads.maskiou.*``) onto
:class:`CenterMaskRoIHead` with :class:`SAGMaskHead` and
:class:`CenterMaskIoUHead` (keys relative to ``roi_heads.`` / ``roi_head.``).

centermask2 tensors copy unchanged (``deconv`` keeps the ConvTranspose2d
``[C_in, C_out, 2, 2]`` layout, the predictors have 80 rows).
maskrcnn-benchmark predictors carry a background row 0
(:data:`BACKGROUND_ROW_KEYS`). The RoI pooler has no parameters.
"""
import re
from typing import Tuple

#: (regex on the centermask2 key without ``roi_heads.``, template of our key
#: without the ``roi_head.`` prefix). ``{i}`` is the 1-based layer number of
#: group ``n`` minus one, ``{p}`` the parameter name. First match wins.
_CENTERMASK2_RULES: Tuple[Tuple['re.Pattern[str]', str], ...] = tuple(
    (re.compile(pattern), template) for pattern, template in (
        (r'mask_head\.mask_fcn(?P<n>\d+)\.(?P<p>weight|bias)',
         'mask_head.convs.{i}.conv.{p}'),
        (r'mask_head\.spatialAtt\.conv\.(?P<p>weight)',
         'mask_head.spatial_attention.conv.{p}'),
        (r'mask_head\.deconv\.(?P<p>weight|bias)', 'mask_head.upsample.{p}'),
        (r'mask_head\.predictor\.(?P<p>weight|bias)',
         'mask_head.conv_logits.{p}'),
        (r'maskiou_head\.maskiou_fcn(?P<n>\d+)\.(?P<p>weight|bias)',
         'mask_iou_head.convs.{i}.{p}'),
        (r'maskiou_head\.maskiou_fc(?P<n>\d+)\.(?P<p>weight|bias)',
         'mask_iou_head.fcs.{i}.{p}'),
        (r'maskiou_head\.maskiou\.(?P<p>weight|bias)',
         'mask_iou_head.fc_mask_iou.{p}'),
    ))

_MASKRCNN_BENCHMARK_RULES: Tuple[Tuple['re.Pattern[str]', str], ...] = tuple(
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


def _apply_rules(key: str, rules, layout: str) -> str:
    """Map ``key`` with the first matching (pattern, template)."""
    for pattern, template in rules:
        match = pattern.fullmatch(key)
        if match is None:
            continue
        groups = match.groupdict()
        layer = int(groups.pop('n')) - 1 if 'n' in groups else None
        return template.format(i=layer, **groups)
    raise KeyError(f'no {layout} mask-branch mapping for {key!r}')


def centermask2_mask_branch_key_to_mmdet(key: str) -> str:
    """Our RoI-head key of a centermask2 mask-branch key (without
    ``roi_heads.``).

    Example:
        >>> centermask2_mask_branch_key_to_mmdet('mask_head.mask_fcn1.weight')
        'mask_head.convs.0.conv.weight'

    Raises:
        KeyError: Not a mask / MaskIoU branch key of this layout.
    """
    return _apply_rules(key, _CENTERMASK2_RULES, 'centermask2')


def maskrcnn_benchmark_mask_branch_key_to_mmdet(key: str) -> str:
    """Our RoI-head key of a maskrcnn-benchmark mask-branch key (without
    ``roi_heads.``).

    Example:
        >>> maskrcnn_benchmark_mask_branch_key_to_mmdet(
        ...     'mask.predictor.conv5_mask.weight')
        'mask_head.upsample.weight'

    Raises:
        KeyError: Not a mask / MaskIoU branch key of this layout.
    """
    return _apply_rules(key, _MASKRCNN_BENCHMARK_RULES, 'maskrcnn-benchmark')
