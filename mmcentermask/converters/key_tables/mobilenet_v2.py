"""MobileNetV2 key table: the tonylins layout of centermask2 and
maskrcnn-benchmark (``features.{k}``) onto mmdet's ``MobileNetV2``.

``features.0.{0,1}`` -> ``conv1.{conv,bn}``; inverted-residual block ``k``
(1..17) -> mmdet ``layer{i}.{j}`` in the order of the (t, c, n, s) table;
inside a block the Sequential indices ``conv.{0,1,3,4,6,7}`` (t = 6) ->
``expand_conv.{conv,bn}``, ``depthwise_conv.{conv,bn}``,
``linear_conv.{conv,bn}``; ``conv.{0,1,3,4}`` (t = 1) ->
``depthwise_conv.{conv,bn}``, ``linear_conv.{conv,bn}``. mmdet's
``MobileNetV2`` always builds a final 1x1 conv to 1280 channels (``conv2``)
that the authors' MobileNetV2 does not have: :func:`mobilenetv2_conv2_fill`.
"""
import re
from typing import Dict, Mapping, Tuple

import torch
from torch import Tensor

MOBILENET_TYPES = ('MobileNetV2', )

#: MobileNetV2 (t, c, n, s) settings shared by tonylins / centermask2 /
#: maskrcnn-benchmark and mmdet (width 1.0).
MOBILENETV2_SETTINGS: Tuple[Tuple[int, int, int, int],
                            ...] = ((1, 16, 1, 1), (6, 24, 2, 2),
                                    (6, 32, 3, 2), (6, 64, 4, 2),
                                    (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1,
                                                                    1))


def _mobilenetv2_blocks() -> Dict[int, Tuple[int, int, int]]:
    """``features`` index k -> (mmdet layer number, block in layer, t)."""
    blocks, k = {}, 1
    for layer, (t, _, n, _) in enumerate(MOBILENETV2_SETTINGS, start=1):
        for j in range(n):
            blocks[k] = (layer, j, t)
            k += 1
    return blocks


_MNV2_BLOCKS = _mobilenetv2_blocks()
# Sequential index inside ``features.k.conv`` -> mmdet unit, per t != 1 / 1
_MNV2_UNITS = {
    True: {
        0: 'expand_conv.conv',
        1: 'expand_conv.bn',
        3: 'depthwise_conv.conv',
        4: 'depthwise_conv.bn',
        6: 'linear_conv.conv',
        7: 'linear_conv.bn'
    },
    False: {
        0: 'depthwise_conv.conv',
        1: 'depthwise_conv.bn',
        3: 'linear_conv.conv',
        4: 'linear_conv.bn'
    },
}
_MNV2_STEM = re.compile(r'features\.0\.(?P<i>[01])\.(?P<p>\w+)')
_MNV2_BLOCK = re.compile(r'features\.(?P<k>\d+)\.conv\.(?P<i>\d+)\.(?P<p>\w+)')


def mobilenetv2_key_to_mmdet(key: str) -> str:
    """mmdet ``MobileNetV2`` key of a centermask2 / maskrcnn-benchmark
    MobileNetV2 key (without ``backbone.bottom_up.`` / ``backbone.body.``).

    Example:
        >>> mobilenetv2_key_to_mmdet('features.4.conv.3.weight')
        'layer3.0.depthwise_conv.conv.weight'

    Raises:
        KeyError: Not a MobileNetV2 key of that layout.
    """
    match = _MNV2_STEM.fullmatch(key)
    if match:
        unit = 'conv' if match['i'] == '0' else 'bn'
        if unit == 'bn' or match['p'] == 'weight':
            return f"conv1.{unit}.{match['p']}"
    match = _MNV2_BLOCK.fullmatch(key)
    if match and int(match['k']) in _MNV2_BLOCKS:
        layer, j, t = _MNV2_BLOCKS[int(match['k'])]
        unit = _MNV2_UNITS[t != 1].get(int(match['i']))
        if unit is not None and (unit.endswith('.bn')
                                 or match['p'] == 'weight'):
            return f"layer{layer}.{j}.{unit}.{match['p']}"
    raise KeyError(f'no MobileNetV2 mapping for key {key!r}')


def mobilenetv2_conv2_fill(target: Mapping[str, Tensor],
                           backbone_cfg: dict) -> Dict[str, Tensor]:
    """Zero conv + identity BN for mmdet MobileNetV2's unused ``conv2``."""
    out_indices = tuple(backbone_cfg.get('out_indices', (1, 2, 4, 7)))
    if 7 in out_indices:
        return {}
    filled = {}
    for key, value in target.items():
        if not key.startswith('backbone.conv2.'):
            continue
        if key.endswith(('bn.weight', 'bn.running_var')):
            filled[key] = torch.ones_like(value)
        else:
            filled[key] = torch.zeros_like(value)
    return filled


MNV2_CONV2_REASON = (
    "mmdet MobileNetV2's final 1x1 conv to 1280 channels, absent from the "
    "authors' MobileNetV2; its output is not used (7 not in out_indices): "
    'zero weights, identity BN')
