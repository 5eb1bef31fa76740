"""FPN key tables: detectron2 (centermask2) and maskrcnn-benchmark layouts
onto mmdet's ``FPN`` with ``add_extra_convs='on_output'`` (P6, P7)."""
import re

_C2_FPN = re.compile(
    r'(?P<kind>fpn_lateral|fpn_output)(?P<level>\d)\.(?P<p>weight|bias)')
_TOP_BLOCK = re.compile(r'top_blocks?\.p(?P<level>[67])\.(?P<p>weight|bias)')


def centermask2_fpn_key_to_mmdet(key: str,
                        num_ins: int = 3,
                        first_level: int = 3) -> str:
    """mmdet ``FPN`` key of a detectron2 FPN key (without ``backbone.``).

    ``fpn_lateral{L}`` -> ``lateral_convs.{L - first_level}.conv``,
    ``fpn_output{L}`` -> ``fpn_convs.{L - first_level}.conv``,
    ``top_block.p6`` / ``p7`` -> ``fpn_convs.{num_ins}`` / ``{num_ins + 1}``
    (``add_extra_convs='on_output'``).

    Args:
        key (str): e.g. ``'fpn_lateral4.weight'``.
        num_ins (int): Number of FPN inputs (3: C3-C5).
        first_level (int): Pyramid level of the first input (3).

    Raises:
        KeyError: Not an FPN key, or a level outside the inputs.
    """
    match = _C2_FPN.fullmatch(key)
    if match:
        index = int(match['level']) - first_level
        if 0 <= index < num_ins:
            module = ('lateral_convs'
                      if match['kind'] == 'fpn_lateral' else 'fpn_convs')
            return f"{module}.{index}.conv.{match['p']}"
    match = _TOP_BLOCK.fullmatch(key)
    if match and key.startswith('top_block.'):
        index = num_ins + int(match['level']) - 6
        return f"fpn_convs.{index}.conv.{match['p']}"
    raise KeyError(f'no FPN mapping for key {key!r}')



_MB_FPN = re.compile(r'fpn_(?P<kind>inner|layer)(?P<i>\d)\.(?P<p>weight|bias)')
_MB_TOP = re.compile(r'top_blocks\.p(?P<level>[67])\.(?P<p>weight|bias)')


def maskrcnn_benchmark_fpn_key_to_mmdet(key: str, num_ins: int = 3) -> str:
    """mmdet ``FPN`` key of a maskrcnn-benchmark FPN key (without
    ``backbone.fpn.``). MB numbers its FPN convs by the position in
    ``in_channels_list = [0, C3, C4, C5]`` starting at 1; the 0-channel
    stage2 entry is skipped, so ``fpn_inner2`` is the C3 lateral.

    Example:
        >>> maskrcnn_benchmark_fpn_key_to_mmdet('fpn_layer4.bias')
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
