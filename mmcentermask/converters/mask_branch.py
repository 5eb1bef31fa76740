"""centermask2 -> mmcentermask key mapping of the mask branch.

Covers the SAG-Mask head (``roi_heads.mask_head.*``) and the MaskIoU head
(``roi_heads.maskiou_head.*``) of a centermask2 (detectron2) state dict. The
mmcentermask names are those of :class:`CenterMaskRoIHead` with
:class:`SAGMaskHead` and :class:`CenterMaskIoUHead` under the detector's
``roi_head`` attribute. Tensors are copied unchanged: every layout already
matches (``deconv`` keeps the ConvTranspose2d ``[C_in, C_out, 2, 2]`` layout,
the predictors have 80 rows in centermask2).

The RoI pooler has no parameters. The full-model converter combines
:func:`convert_mask_branch_key` with the other parts' tables.
"""
import re
from typing import Dict, Mapping, Optional, Tuple

from torch import Tensor

#: prefixes of the mask branch in a centermask2 state dict
C2_MASK_BRANCH_PREFIXES = ('roi_heads.mask_head.', 'roi_heads.maskiou_head.')

#: (regex on the centermask2 key without ``roi_heads.``, template of our key
#: without the destination prefix). ``{i}`` is the 1-based layer number of
#: group ``n`` minus one, ``{p}`` the parameter name. First match wins.
MASK_BRANCH_RULES: Tuple[Tuple[str, str], ...] = (
    (r'mask_head\.mask_fcn(?P<n>\d+)\.(?P<p>weight|bias)',
     'mask_head.convs.{i}.conv.{p}'),
    (r'mask_head\.spatialAtt\.conv\.(?P<p>weight)',
     'mask_head.spatial_attention.conv.{p}'),
    (r'mask_head\.deconv\.(?P<p>weight|bias)', 'mask_head.upsample.{p}'),
    (r'mask_head\.predictor\.(?P<p>weight|bias)', 'mask_head.conv_logits.{p}'),
    (r'maskiou_head\.maskiou_fcn(?P<n>\d+)\.(?P<p>weight|bias)',
     'mask_iou_head.convs.{i}.{p}'),
    (r'maskiou_head\.maskiou_fc(?P<n>\d+)\.(?P<p>weight|bias)',
     'mask_iou_head.fcs.{i}.{p}'),
    (r'maskiou_head\.maskiou\.(?P<p>weight|bias)',
     'mask_iou_head.fc_mask_iou.{p}'),
)


def convert_mask_branch_key(key: str,
                            dst_prefix: str = 'roi_head.') -> Optional[str]:
    """Our name for one centermask2 key.

    Args:
        key (str): centermask2 key, e.g.
            ``roi_heads.mask_head.mask_fcn1.weight``.
        dst_prefix (str): Prefix of the RoI head in our model.
            Defaults to ``'roi_head.'`` (mmdet two-stage detectors).

    Returns:
        str or None: e.g. ``roi_head.mask_head.convs.0.conv.weight``; None if
        ``key`` is not in the mask branch.

    Raises:
        KeyError: ``key`` is in the mask branch but matches no rule.
    """
    if not key.startswith(C2_MASK_BRANCH_PREFIXES):
        return None
    name = key[len('roi_heads.'):]
    for pattern, template in MASK_BRANCH_RULES:
        match = re.fullmatch(pattern, name)
        if match is None:
            continue
        groups = match.groupdict()
        layer = int(groups.pop('n')) - 1 if 'n' in groups else None
        return dst_prefix + template.format(i=layer, **groups)
    raise KeyError(f'unknown centermask2 mask-branch key: {key}')


def convert_mask_branch(state_dict: Mapping[str, Tensor],
                        dst_prefix: str = 'roi_head.') -> Dict[str, Tensor]:
    """Convert the mask-branch entries of a centermask2 state dict.

    Args:
        state_dict (Mapping[str, Tensor]): centermask2 ``model`` state dict
            (other parts are ignored).
        dst_prefix (str): See :func:`convert_mask_branch_key`.

    Returns:
        dict[str, Tensor]: Our keys to the same tensors, in source order.

    Raises:
        KeyError: Listing every mask-branch key that matches no rule.
    """
    converted, unknown = {}, []
    for key, value in state_dict.items():
        try:
            new_key = convert_mask_branch_key(key, dst_prefix)
        except KeyError:
            unknown.append(key)
            continue
        if new_key is not None:
            converted[new_key] = value
    if unknown:
        raise KeyError(f'unknown centermask2 mask-branch keys: {unknown}')
    return converted
