"""VoVNet key tables: centermask2 / vovnet-detectron2, maskrcnn-benchmark
and timm layouts onto :class:`mmcentermask.models.backbones.VoVNet`.

Notation: ``{S}`` stage 2..5, ``{B}`` OSA module 1..N (``{b}`` = B - 1),
``{i}`` 3x3 layer 0..L-1, ``{k}`` stem conv 1..3 (``{j}`` = k - 1), ``{s}``
timm stage 0..3 (S = s + 2), ``<unit>`` in ``conv``, ``norm``, ``dw_conv``,
``pw_conv``.

centermask2 / maskrcnn-benchmark source key -> mmcentermask ``VoVNet`` key:

* ``stem.stem_{k}/conv.weight`` -> ``stem.{j}.conv.weight``;
  ``stem.stem_{k}/norm.*`` -> ``stem.{j}.norm.*``
* ``-dw`` variants: ``.../dw_conv3x3.weight`` -> ``.dw_conv.weight``,
  ``.../pw_conv1x1.weight`` -> ``.pw_conv.weight``, ``.../pw_norm.*`` ->
  ``.norm.*`` (stem convs 2, 3 and the OSA layers)
* ``stage{S}.OSA{S}_{B}.layers.{i}.OSA{S}_{B}_{i}/<unit>.*`` ->
  ``stage{S}.blocks.{b}.layers.{i}.<unit>.*``
* C2 DCN ``...OSA{S}_{B}_{i}/conv_offset.{weight,bias}`` and MB DCN
  ``...OSA{S}_{B}_{i}/conv.offset.{weight,bias}`` ->
  ``...layers.{i}.conv.conv_offset.*``; MB DCN
  ``...OSA{S}_{B}_{i}/conv.conv.weight`` -> ``...layers.{i}.conv.weight``
* ``stage{S}.OSA{S}_{B}.conv_reduction.OSA{S}_{B}_reduction_0/{conv,norm}.*``
  -> ``stage{S}.blocks.{b}.reduction.{conv,norm}.*``
* ``stage{S}.OSA{S}_{B}.concat.OSA{S}_{B}_concat/{conv,norm}.*`` ->
  ``stage{S}.blocks.{b}.concat.{conv,norm}.*``
* ``stage{S}.OSA{S}_{B}.ese.fc.{weight,bias}`` ->
  ``stage{S}.blocks.{b}.ese.fc.*``

timm source key -> ``VoVNet`` key (``conv_dw`` -> ``dw_conv``, ``conv_pw`` ->
``pw_conv``, ``bn`` -> ``norm``):

* ``stem.{j}.{conv,conv_dw,conv_pw,bn}.*`` -> ``stem.{j}.<unit>.*``
* ``stages.{s}.blocks.{b}.conv_mid.{i}.*`` ->
  ``stage{S}.blocks.{b}.layers.{i}.*``
* ``stages.{s}.blocks.{b}.conv_reduction.*`` / ``.conv_concat.*`` ->
  ``stage{S}.blocks.{b}.reduction.*`` / ``.concat.*``
* ``stages.{s}.blocks.{b}.attn.fc.*`` -> ``stage{S}.blocks.{b}.ese.fc.*``
  (timm has eSE in the last module of a stage only: load into
  ``VoVNet(arch, ese_last_only=True)``)
"""
import re
from dataclasses import dataclass
from typing import Dict, FrozenSet, Mapping, Sequence, Tuple

_CONV = frozenset({'weight'})
_CONV_BIAS = frozenset({'weight', 'bias'})
_NORM = frozenset(
    {'weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked'})

# unit name in the source -> (unit name in VoVNet, allowed parameter names)
_C2_UNITS: Dict[str, Tuple[str, FrozenSet[str]]] = {
    'conv': ('conv', _CONV),
    'norm': ('norm', _NORM),
    'dw_conv3x3': ('dw_conv', _CONV),
    'pw_conv1x1': ('pw_conv', _CONV),
    'pw_norm': ('norm', _NORM),
    'conv_offset': ('conv.conv_offset', _CONV_BIAS),
}
_MB_DCN_UNITS: Dict[str, Tuple[str, FrozenSet[str]]] = {
    'conv.offset': ('conv.conv_offset', _CONV_BIAS),
    'conv.conv': ('conv', _CONV),
}
_TIMM_UNITS: Dict[str, Tuple[str, FrozenSet[str]]] = {
    'conv': ('conv', _CONV),
    'conv_dw': ('dw_conv', _CONV),
    'conv_pw': ('pw_conv', _CONV),
    'bn': ('norm', _NORM),
}

_OSA = r'stage(?P<S>[2-5])\.OSA(?P=S)_(?P<B>[1-9]\d*)\.'
_UNIT = r'(?P<unit>\w+)\.(?P<param>\w+)'
_TIMM_BLOCK = r'stages\.(?P<s>[0-3])\.blocks\.(?P<b>\d+)\.'


@dataclass(frozen=True)
class _Rule:
    """A source-key pattern and the target template.

    ``template`` is formatted with the match groups plus ``b`` (0-based
    block), ``j`` (0-based stem conv), ``S`` (stage number) and ``unit`` (the
    renamed unit); ``units`` lists the unit names this position allows.
    """
    pattern: 're.Pattern[str]'
    template: str
    units: Mapping[str, Tuple[str, FrozenSet[str]]]


def _rule(pattern: str, template: str,
          units: Mapping[str, Tuple[str, FrozenSet[str]]]) -> _Rule:
    return _Rule(re.compile(pattern), template, units)


_C2_STEM_UNITS = {k: v for k, v in _C2_UNITS.items() if k != 'conv_offset'}
_CONV_NORM_UNITS = {k: _C2_UNITS[k] for k in ('conv', 'norm')}

_C2_RULES: Tuple[_Rule, ...] = (
    _rule(r'stem\.stem_(?P<k>[1-3])/' + _UNIT, 'stem.{j}.{unit}.{param}',
          _C2_STEM_UNITS),
    _rule(_OSA + r'layers\.(?P<i>\d+)\.OSA(?P=S)_(?P=B)_(?P=i)/' + _UNIT,
          'stage{S}.blocks.{b}.layers.{i}.{unit}.{param}', _C2_UNITS),
    _rule(_OSA + r'conv_reduction\.OSA(?P=S)_(?P=B)_reduction_0/' + _UNIT,
          'stage{S}.blocks.{b}.reduction.{unit}.{param}', _CONV_NORM_UNITS),
    _rule(_OSA + r'concat\.OSA(?P=S)_(?P=B)_concat/' + _UNIT,
          'stage{S}.blocks.{b}.concat.{unit}.{param}', _CONV_NORM_UNITS),
    _rule(_OSA + r'ese\.(?P<unit>fc)\.(?P<param>\w+)',
          'stage{S}.blocks.{b}.ese.{unit}.{param}', {'fc':
                                                     ('fc', _CONV_BIAS)}),
)

_MB_DCN_RULE = _rule(
    _OSA + r'layers\.(?P<i>\d+)\.OSA(?P=S)_(?P=B)_(?P=i)/'
    r'(?P<unit>conv\.(?:offset|conv))\.(?P<param>\w+)',
    'stage{S}.blocks.{b}.layers.{i}.{unit}.{param}', _MB_DCN_UNITS)

_TIMM_CONV_NORM = {k: _TIMM_UNITS[k] for k in ('conv', 'bn')}
_TIMM_RULES: Tuple[_Rule, ...] = (
    _rule(r'stem\.(?P<j>[0-2])\.' + _UNIT, 'stem.{j}.{unit}.{param}',
          _TIMM_UNITS),
    _rule(_TIMM_BLOCK + r'conv_mid\.(?P<i>\d+)\.' + _UNIT,
          'stage{S}.blocks.{b}.layers.{i}.{unit}.{param}', _TIMM_UNITS),
    _rule(_TIMM_BLOCK + r'conv_reduction\.' + _UNIT,
          'stage{S}.blocks.{b}.reduction.{unit}.{param}', _TIMM_CONV_NORM),
    _rule(_TIMM_BLOCK + r'conv_concat\.' + _UNIT,
          'stage{S}.blocks.{b}.concat.{unit}.{param}', _TIMM_CONV_NORM),
    _rule(_TIMM_BLOCK + r'attn\.(?P<unit>fc)\.(?P<param>\w+)',
          'stage{S}.blocks.{b}.ese.{unit}.{param}', {'fc':
                                                     ('fc', _CONV_BIAS)}),
)


def _apply_rules(key: str, rules: Sequence[_Rule]) -> str:
    """Map ``key`` with the first matching rule; KeyError if none fits."""
    for rule in rules:
        match = rule.pattern.fullmatch(key)
        if match is None:
            continue
        groups = match.groupdict()
        unit, params = rule.units.get(groups['unit'], (None, frozenset()))
        if unit is None or groups['param'] not in params:
            break
        values = dict(groups, unit=unit)
        if 'B' in groups:
            values['b'] = int(groups['B']) - 1
        if 'k' in groups:
            values['j'] = int(groups['k']) - 1
        if 's' in groups:
            values['S'] = int(groups['s']) + 2
        return rule.template.format(**values)
    raise KeyError(f'no VoVNet mapping for key {key!r}')


def centermask2_vovnet_key_to_mmdet(key: str) -> str:
    """Map a centermask2 / vovnet-detectron2 VoVNet key (without the
    ``backbone.bottom_up.`` prefix) to the mmcentermask ``VoVNet`` key.

    Example:
        >>> centermask2_vovnet_key_to_mmdet(
        ...     'stage4.OSA4_2.layers.3.OSA4_2_3/norm.bias')
        'stage4.blocks.1.layers.3.norm.bias'

    Raises:
        KeyError: ``key`` is not a VoVNet key of this layout.
    """
    return _apply_rules(key, _C2_RULES)


def maskrcnn_benchmark_vovnet_key_to_mmdet(key: str) -> str:
    """Map a maskrcnn-benchmark CenterMask VoVNet key (without the
    ``backbone.body.`` prefix): the C2 names plus MB's DCN layout
    (``.../conv.offset.*``, ``.../conv.conv.weight``).

    Raises:
        KeyError: ``key`` is not a VoVNet key of this layout.
    """
    try:
        return _apply_rules(key, (_MB_DCN_RULE, ))
    except KeyError:
        return _apply_rules(key, _C2_RULES)


def timm_vovnet_key_to_mmdet(key: str) -> str:
    """Map a timm ``ese_vovnet*`` / ``vovnet*a`` key (classifier excluded).

    Raises:
        KeyError: ``key`` is not a VoVNet key of this layout.
    """
    return _apply_rules(key, _TIMM_RULES)
