"""Convert VoVNet state dicts of the authors' code and of timm to the keys of
:class:`mmcentermask.models.backbones.VoVNet`.

Sources: "C2" = centermask2 and vovnet-detectron2, "MB" = the
maskrcnn-benchmark CenterMask (same names as C2, DCN layers differ, FrozenBN
without eps), "timm" = ``ese_vovnet*`` / ``vovnet*a``. Notation: ``{S}`` stage
2..5, ``{B}`` OSA module 1..N (``{b}`` = B - 1), ``{i}`` 3x3 layer 0..L-1,
``{k}`` stem conv 1..3 (``{j}`` = k - 1), ``{s}`` timm stage 0..3 (S = s + 2),
``<unit>`` in ``conv``, ``norm``, ``dw_conv``, ``pw_conv``.

C2 / MB source key -> mmcentermask ``VoVNet`` key:

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

ImageNet classifier keys ``fc.*``, ``head.*`` and ``classifier.*`` are
ignored and counted.

Optional prefixes ``module.`` and ``backbone.bottom_up.`` (C2 detector) or
``backbone.body.`` (MB detector) are stripped first. The DCN offset-conv layout
of both sources equals mmcv ``ModulatedDeformConv2dPack`` (27 channels: 18
offsets, then 9 mask logits), so offset convs copy unchanged. Norm buffers
``num_batches_tracked`` are added (0) where the source has running statistics
but no counter (FrozenBN), so the result loads with ``strict=True``.

Every source key must be mapped or be a classifier key, otherwise the
conversion stops with a :class:`ValueError` listing the unknown keys; with a
``reference`` state dict (e.g. ``VoVNet(arch).state_dict()``) missing keys,
extra keys and shape mismatches stop it too.
"""
import pickle
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import (Callable, Dict, FrozenSet, List, Mapping, Optional,
                    Sequence, Tuple)

import numpy as np
import torch
from torch import Tensor

#: Prefixes stripped before mapping, in this order.
MODULE_PREFIX = 'module.'
BACKBONE_PREFIXES: Tuple[str, ...] = ('backbone.bottom_up.', 'backbone.body.')
#: Classifier keys of ImageNet checkpoints, ignored (and counted).
CLASSIFIER_PREFIXES: Tuple[str, ...] = ('fc.', 'head.', 'classifier.')
#: Detectron2 FrozenBN eps (= BN eps of mmcentermask's VoVNet).
BN_EPS = 1e-5
SOURCE_FORMATS: Tuple[str, ...] = ('c2', 'mb', 'timm')

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


def c2_vovnet_key_to_mmdet(key: str) -> str:
    """Map a centermask2 / vovnet-detectron2 VoVNet key (without the
    ``backbone.bottom_up.`` prefix) to the mmcentermask ``VoVNet`` key.

    Example:
        >>> c2_vovnet_key_to_mmdet('stage4.OSA4_2.layers.3.OSA4_2_3/norm.bias')
        'stage4.blocks.1.layers.3.norm.bias'

    Raises:
        KeyError: ``key`` is not a VoVNet key of this layout.
    """
    return _apply_rules(key, _C2_RULES)


def mb_vovnet_key_to_mmdet(key: str) -> str:
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


KEY_MAPPERS: Dict[str, Callable[[str], str]] = {
    'c2': c2_vovnet_key_to_mmdet,
    'mb': mb_vovnet_key_to_mmdet,
    'timm': timm_vovnet_key_to_mmdet,
}


@dataclass
class VoVNetConversion:
    """Result of a conversion.

    Attributes:
        state_dict (OrderedDict[str, Tensor]): Converted tensors, VoVNet keys.
        source_format (str): ``'c2'``, ``'mb'`` or ``'timm'``.
        num_converted (int): Source tensors mapped onto VoVNet keys.
        ignored (list[str]): Classifier keys that were skipped.
        added (list[str]): ``num_batches_tracked`` buffers filled with 0.
        num_clamped (int): Running-variance entries clamped by the MB eps fold.
    """
    state_dict: 'OrderedDict[str, Tensor]'
    source_format: str
    num_converted: int = 0
    ignored: List[str] = field(default_factory=list)
    added: List[str] = field(default_factory=list)
    num_clamped: int = 0


def strip_prefixes(key: str) -> str:
    """Remove ``module.`` and then one detector backbone prefix."""
    if key.startswith(MODULE_PREFIX):
        key = key[len(MODULE_PREFIX):]
    for prefix in BACKBONE_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def detect_vovnet_format(keys: Sequence[str]) -> str:
    """Guess the source layout: ``'timm'`` (``stages.`` keys), ``'mb'``
    (``backbone.body.`` prefix or MB DCN keys) or ``'c2'`` (``/`` names).

    MB ImageNet files use exactly the C2 names and are detected as ``'c2'``
    (same mapping); pass ``'mb'`` explicitly to fold the eps.

    Raises:
        ValueError: None of the layouts fits.
    """
    stripped = [strip_prefixes(k) for k in keys]
    if any(k.startswith('stages.') for k in stripped):
        return 'timm'
    mb_prefixes = ('backbone.body.', MODULE_PREFIX + 'backbone.body.')
    if any(k.startswith(mb_prefixes)
           for k in keys) or any('/conv.conv.' in k or '/conv.offset.' in k
                                 for k in stripped):
        return 'mb'
    if any('/' in k for k in stripped):
        return 'c2'
    raise ValueError('Cannot tell the VoVNet checkpoint layout (c2, mb or '
                     f'timm) from keys such as {list(keys)[:5]}')


def fold_frozen_bn_eps(running_var: Tensor,
                       eps: float = BN_EPS) -> Tuple[Tensor, int]:
    """Make a BN with ``eps`` compute maskrcnn-benchmark's FrozenBN, which
    has no eps (scale = weight / sqrt(var)).

    Stores ``running_var - eps``, so that ``sqrt(var' + eps) = sqrt(var)``.
    Entries with ``var <= eps`` cannot be reproduced; they are clamped to the
    smallest positive float (then the BN uses ``sqrt(eps)``) and counted.

    Returns:
        tuple[Tensor, int]: The new running variance and the clamped count.
    """
    folded = running_var - eps
    tiny = torch.finfo(folded.dtype).tiny
    num_clamped = int((folded <= 0).sum())
    return folded.clamp(min=tiny), num_clamped


def check_against_reference(state_dict: Mapping[str, Tensor],
                            reference: Mapping[str, Tensor]) -> None:
    """Raise ValueError naming missing keys, extra keys and shape mismatches
    of ``state_dict`` against ``reference`` (a target model's state dict)."""
    missing = sorted(set(reference) - set(state_dict))
    extra = sorted(set(state_dict) - set(reference))
    shapes = sorted(f'{k}: {tuple(state_dict[k].shape)} vs '
                    f'{tuple(reference[k].shape)}'
                    for k in set(state_dict) & set(reference)
                    if state_dict[k].shape != reference[k].shape)
    problems = []
    if missing:
        problems.append(f'{len(missing)} missing target keys: {missing}')
    if extra:
        problems.append(f'{len(extra)} converted keys the target does not '
                        f'have: {extra}')
    if shapes:
        problems.append(f'{len(shapes)} shape mismatches: {shapes}')
    if problems:
        raise ValueError('Converted VoVNet weights do not fit the target '
                         'model (wrong arch, ese_last_only, dcn or norm?): ' +
                         '; '.join(problems))


def _convert(state_dict: Mapping[str, Tensor],
             source_format: str,
             reference: Optional[Mapping[str, Tensor]] = None,
             fold_eps: bool = False) -> VoVNetConversion:
    mapper = KEY_MAPPERS[source_format]
    result = VoVNetConversion(OrderedDict(), source_format)
    unknown, sources = [], {}
    for src_key, value in state_dict.items():
        key = strip_prefixes(src_key)
        if key.startswith(CLASSIFIER_PREFIXES):
            result.ignored.append(src_key)
            continue
        try:
            new_key = mapper(key)
        except KeyError:
            unknown.append(src_key)
            continue
        if new_key in sources:
            raise ValueError(f'Source keys {sources[new_key]!r} and '
                             f'{src_key!r} both map to {new_key!r}')
        sources[new_key] = src_key
        if fold_eps and new_key.endswith('.running_var'):
            value, clamped = fold_frozen_bn_eps(value)
            result.num_clamped += clamped
        result.state_dict[new_key] = value
    if unknown:
        raise ValueError(f'{len(unknown)} keys of the {source_format} '
                         f'checkpoint are not VoVNet keys: {unknown}')
    result.num_converted = len(result.state_dict)
    for key in list(result.state_dict):
        if key.endswith('.running_var'):
            counter = key[:-len('running_var')] + 'num_batches_tracked'
            if counter not in result.state_dict:
                result.state_dict[counter] = torch.tensor(0, dtype=torch.long)
                result.added.append(counter)
    if reference is not None:
        check_against_reference(result.state_dict, reference)
    return result


def convert_c2_vovnet(
        state_dict: Mapping[str, Tensor],
        reference: Optional[Mapping[str, Tensor]] = None) -> VoVNetConversion:
    """Convert a centermask2 / vovnet-detectron2 VoVNet state dict (bare keys
    or ``backbone.bottom_up.`` prefixed).

    Args:
        state_dict (Mapping[str, Tensor]): Source tensors.
        reference (Mapping[str, Tensor], optional): Target state dict to check
            the result against. Defaults to None (no check).

    Raises:
        ValueError: Unknown source keys, or a mismatch with ``reference``.
    """
    return _convert(state_dict, 'c2', reference)


def convert_mb_vovnet(state_dict: Mapping[str, Tensor],
                      reference: Optional[Mapping[str, Tensor]] = None,
                      fold_eps: bool = False) -> VoVNetConversion:
    """Convert a maskrcnn-benchmark CenterMask VoVNet state dict (bare keys,
    ``backbone.body.`` and/or ``module.`` prefixed).

    Args:
        state_dict (Mapping[str, Tensor]): Source tensors.
        reference (Mapping[str, Tensor], optional): Target state dict to check
            the result against. Defaults to None.
        fold_eps (bool): Store ``running_var - 1e-5`` (clamped > 0) so that
            mmcentermask's BN (eps 1e-5) reproduces MB's eps-free FrozenBN,
            see :func:`fold_frozen_bn_eps`. Defaults to False (keep the
            statistics as they are; the outputs then differ slightly).

    Raises:
        ValueError: Unknown source keys, or a mismatch with ``reference``.
    """
    return _convert(state_dict, 'mb', reference, fold_eps)


def convert_timm_vovnet(
        state_dict: Mapping[str, Tensor],
        reference: Optional[Mapping[str, Tensor]] = None) -> VoVNetConversion:
    """Convert a timm ``ese_vovnet*`` / ``vovnet*a`` state dict. The result
    fits ``VoVNet(arch, ese_last_only=True)`` (timm has eSE only in the last
    OSA module of a stage).

    Raises:
        ValueError: Unknown source keys, or a mismatch with ``reference``.
    """
    return _convert(state_dict, 'timm', reference)


def convert_vovnet_state_dict(state_dict: Mapping[str, Tensor],
                              source_format: str = 'auto',
                              reference: Optional[Mapping[str, Tensor]] = None,
                              fold_eps: bool = False) -> VoVNetConversion:
    """Dispatch to the converter of ``source_format``.

    Args:
        state_dict (Mapping[str, Tensor]): Source tensors.
        source_format (str): ``'c2'``, ``'mb'``, ``'timm'`` or ``'auto'``
            (:func:`detect_vovnet_format`). Defaults to ``'auto'``.
        reference (Mapping[str, Tensor], optional): Target state dict to check
            against. Defaults to None.
        fold_eps (bool): MB only, see :func:`convert_mb_vovnet`.

    Raises:
        ValueError: Unknown format, ``fold_eps`` with a non-MB source, unknown
            source keys or a mismatch with ``reference``.
    """
    if source_format == 'auto':
        source_format = detect_vovnet_format(list(state_dict))
    if source_format not in SOURCE_FORMATS:
        raise ValueError(f'source_format must be one of {SOURCE_FORMATS} or '
                         f"'auto', got {source_format!r}")
    if fold_eps and source_format != 'mb':
        raise ValueError('fold_eps applies to maskrcnn-benchmark (mb) '
                         f'checkpoints only, not {source_format!r}')
    return _convert(state_dict, source_format, reference, fold_eps)


def load_source_state_dict(path: str) -> 'OrderedDict[str, Tensor]':
    """Read a checkpoint: ``.pkl`` (pickle of numpy arrays, detectron2 style)
    or anything :func:`torch.load` reads (loaded with ``weights_only=False``:
    only use trusted files). A ``model`` or ``state_dict`` entry holding the
    tensors is unwrapped.

    Raises:
        ValueError: Entries that are neither tensors nor numpy arrays.
    """
    if path.endswith('.pkl'):
        with open(path, 'rb') as f:
            obj = pickle.load(f, encoding='latin1')
    else:
        obj = torch.load(path, map_location='cpu', weights_only=False)
    for wrapper in ('state_dict', 'model'):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    tensors, bad = OrderedDict(), []
    for key, value in obj.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.ascontiguousarray(value))
        if isinstance(value, Tensor):
            tensors[key] = value
        else:
            bad.append(key)
    if bad:
        raise ValueError(f'{path}: entries that are not tensors: {bad}')
    return tensors
