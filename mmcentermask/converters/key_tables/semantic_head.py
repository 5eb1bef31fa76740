"""Semantic-head key table: detectron2's ``SemSegFPNHead``
(``sem_seg_head.*`` of centermask2's Panoptic-CenterMask) onto
:class:`SemSegFPNHead` / MMDetection's ``PanopticFPNHead`` (keys relative to
``sem_seg_head.`` / ``semantic_head.``).

detectron2 names the head's blocks by FPN level and position in an
``nn.Sequential`` of (conv, upsample) pairs: ``p{L}.{2j}`` is the j-th conv of
level L (its GN is ``p{L}.{2j}.norm``); MMDetection has
``conv_upsample_layers.{L - first_level}.conv.{j}`` (a ``ConvModule`` with
``conv`` and ``gn``). The 1x1 predictor has "things" at row 0 and the stuff
classes at rows 1.. in detectron2, the stuff classes first and "things"
last in MMDetection: :func:`things_row_last` moves row 0 to the end.
"""
import re

from torch import Tensor

_LEVEL_CONV = re.compile(
    r'p(?P<level>\d)\.(?P<index>\d+)\.(?P<norm>norm\.)?(?P<p>weight|bias)')
_PREDICTOR = re.compile(r'predictor\.(?P<p>weight|bias)')
#: our key of the predictor (without ``semantic_head.``)
PREDICTOR_KEYS = ('conv_logits.weight', 'conv_logits.bias')


def centermask2_semantic_head_key_to_mmdet(key: str,
                                           first_level: int = 2) -> str:
    """Our semantic-head key of a detectron2 ``SemSegFPNHead`` key.

    Example:
        >>> centermask2_semantic_head_key_to_mmdet('p4.2.norm.bias')
        'conv_upsample_layers.2.conv.1.gn.bias'
        >>> centermask2_semantic_head_key_to_mmdet('predictor.weight')
        'conv_logits.weight'

    Args:
        key (str): Key without ``sem_seg_head.``.
        first_level (int): FPN level of the head's first input (2: P2).

    Raises:
        KeyError: Not a key of this head (or an upsampling position, which
            has no parameters).
    """
    match = _LEVEL_CONV.fullmatch(key)
    if match and int(match['index']) % 2 == 0 and \
            int(match['level']) >= first_level:
        module = 'gn' if match['norm'] else 'conv'
        return (f"conv_upsample_layers.{int(match['level']) - first_level}."
                f"conv.{int(match['index']) // 2}.{module}.{match['p']}")
    match = _PREDICTOR.fullmatch(key)
    if match:
        return f"conv_logits.{match['p']}"
    raise KeyError(f'no SemSegFPNHead mapping for key {key!r}')


def things_row_last(value: Tensor) -> Tensor:
    """detectron2's predictor rows (things, stuff 1..S) in our order
    (stuff 0..S-1, things)."""
    return value.roll(-1, dims=0)
