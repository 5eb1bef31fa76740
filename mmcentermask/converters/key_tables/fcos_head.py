"""Key mapping of the centermask2 (and maskrcnn-benchmark) FCOS head onto
:class:`~mmcentermask.models.dense_heads.CenterMaskFCOSHead`."""
import re

_C2_TOWERS = {'cls_tower': 'cls_convs', 'bbox_tower': 'reg_convs'}
_C2_TOWER_LAYERS = ('conv', 'gn')  # tower = [conv, GN, ReLU] * n
_C2_PREDICTORS = {
    'cls_logits': 'conv_cls',
    'bbox_pred': 'conv_reg',
    'ctrness': 'conv_centerness',  # C2
    'centerness': 'conv_centerness',  # MB
}
_C2_TOWER_PARAM = re.compile(r'(?P<index>\d+)\.(?P<param>weight|bias)')
_C2_SCALE_PARAM = re.compile(r'\d+\.scale')


def fcos_head_key_to_mmdet(key: str) -> str:
    """Name in :class:`CenterMaskFCOSHead` of a centermask2 (or MB) FCOS
    head parameter.

    ``cls_tower.{3i}`` -> ``cls_convs.{i}.conv``, ``cls_tower.{3i+1}`` ->
    ``cls_convs.{i}.gn`` (``bbox_tower`` -> ``reg_convs``), ``cls_logits``
    -> ``conv_cls``, ``bbox_pred`` -> ``conv_reg``, ``ctrness`` (MB
    ``centerness``) -> ``conv_centerness``, ``scales.{l}.scale`` unchanged.

    Args:
        key (str): Key relative to the head, e.g. ``'cls_tower.3.weight'``.

    Returns:
        str: The mmdet key, e.g. ``'cls_convs.1.conv.weight'``.

    Raises:
        KeyError: For any other key (e.g. a non-empty ``share_tower``).
    """
    module, _, param = key.partition('.')
    if module in _C2_PREDICTORS and param in ('weight', 'bias'):
        return f'{_C2_PREDICTORS[module]}.{param}'
    if module == 'scales' and _C2_SCALE_PARAM.fullmatch(param):
        return key
    tower_param = _C2_TOWER_PARAM.fullmatch(param)
    if module in _C2_TOWERS and tower_param:
        layer, position = divmod(int(tower_param['index']), 3)
        if position < len(_C2_TOWER_LAYERS):
            return (f'{_C2_TOWERS[module]}.{layer}.'
                    f"{_C2_TOWER_LAYERS[position]}.{tower_param['param']}")
    raise KeyError(f'unknown centermask2 FCOS head key {key!r}')
