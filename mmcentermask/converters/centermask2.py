"""Convert a whole centermask2 (detectron2) CenterMask checkpoint to an
MMEngine checkpoint of mmcentermask's :class:`CenterMask`.

The conversion is driven by the *target*: the model built from an
mmcentermask config. Every source key must be claimed by exactly one part
table below and every target key must be filled, otherwise
:class:`ConversionError` lists the problems and nothing is written.

Part tables (source prefix -> target prefix, key function):

=====================================  ===============  =========================================
centermask2 prefix                     our prefix       key table
=====================================  ===============  =========================================
``backbone.bottom_up.`` (VoVNet)       ``backbone.``    :func:`~.vovnet.c2_vovnet_key_to_mmdet`
``backbone.bottom_up.`` (ResNet/X)     ``backbone.``    :func:`c2_resnet_key_to_mmdet`
``backbone.bottom_up.`` (MobileNetV2)  ``backbone.``    :func:`mobilenetv2_key_to_mmdet`
``backbone.`` (FPN, P6/P7)             ``neck.``        :func:`c2_fpn_key_to_mmdet`
``proposal_generator.fcos_head.``      ``bbox_head.``   ``c2_fcos_head_key_to_mmdet`` (FCOS head
                                                        module); ``scales.{l}.scale`` (1, ) -> ()
``roi_heads.mask_head.``,              ``roi_head.``    :func:`~.mask_branch.convert_mask_branch_key`
``roi_heads.maskiou_head.``
``pixel_mean``, ``pixel_std``          (dropped)        checked against the config's
                                                        ``data_preprocessor`` mean / std first
=====================================  ===============  =========================================

ResNet / ResNeXt (detectron2 names, relative to ``backbone.bottom_up.``):
``stem.conv1.weight`` -> ``conv1.weight``, ``stem.conv1.norm.*`` -> ``bn1.*``,
``res{S}.{j}.conv{k}.weight`` -> ``layer{S-1}.{j}.conv{k}.weight``,
``res{S}.{j}.conv{k}.norm.*`` -> ``layer{S-1}.{j}.bn{k}.*``,
``res{S}.{j}.shortcut.weight`` / ``.shortcut.norm.*`` ->
``layer{S-1}.{j}.downsample.0.weight`` / ``.downsample.1.*``, deformable
``res{S}.{j}.conv2_offset.*`` -> ``layer{S-1}.{j}.conv2.conv_offset.*``.

MobileNetV2 (tonylins layout, ``features.{k}``): ``features.0.{0,1}`` ->
``conv1.{conv,bn}``; inverted-residual block ``k`` (1..17) -> mmdet
``layer{i}.{j}`` in the order of the (t, c, n, s) table; inside a block the
Sequential indices ``conv.{0,1,3,4,6,7}`` (t = 6) -> ``expand_conv.{conv,bn}``,
``depthwise_conv.{conv,bn}``, ``linear_conv.{conv,bn}``; ``conv.{0,1,3,4}``
(t = 1) -> ``depthwise_conv.{conv,bn}``, ``linear_conv.{conv,bn}``.
mmdet's ``MobileNetV2`` always builds a final 1x1 conv to 1280 channels
(``conv2``) that centermask2's MobileNetV2 does not have; when the config
does not output it (``7 not in out_indices``) it is filled with zero weights
and an identity BN and reported as added (its output is never used).

FrozenBN buffers (``weight, bias, running_mean, running_var``) copy onto
mmdet ``BN`` layers, whose eps must be detectron2's 1e-5 (checked);
``num_batches_tracked`` counters are filled with 0.

Loading: ``.pth`` / ``.pkl`` files with or without a ``model`` entry (see
:func:`~.vovnet.load_source_state_dict`); a leading ``module.`` is
stripped. Only convert files you trust (``.pth`` is unpickled).
"""
import datetime
import os.path as osp
import re
import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from .fcos import c2_fcos_head_key_to_mmdet
from .mask_branch import convert_mask_branch_key
from .vovnet import c2_vovnet_key_to_mmdet, load_source_state_dict

#: detectron2 FrozenBN eps; the target BN layers must use the same.
FROZEN_BN_EPS = 1e-5
#: COCO classes in contiguous order (COCO category ids sorted ascending),
#: the order of the 80 class channels of every released checkpoint.
COCO_CLASSES: Tuple[str, ...] = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train',
    'truck', 'boat', 'traffic light', 'fire hydrant', 'stop sign',
    'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow',
    'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella', 'handbag',
    'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball', 'kite',
    'baseball bat', 'baseball glove', 'skateboard', 'surfboard',
    'tennis racket', 'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon',
    'bowl', 'banana', 'apple', 'sandwich', 'orange', 'broccoli', 'carrot',
    'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant',
    'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote',
    'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink',
    'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear',
    'hair drier', 'toothbrush')

MODULE_PREFIX = 'module.'
#: Backbone types with a key table, per source layout.
VOVNET_TYPES = ('VoVNet', )
RESNET_TYPES = ('ResNet', 'ResNetV1d', 'ResNeXt')
MOBILENET_TYPES = ('MobileNetV2', )

KeyFn = Callable[[str], str]
ValueFn = Callable[[str, Tensor, Tensor], Tensor]


class ConversionError(ValueError):
    """The source does not convert onto the target model; the message lists
    every leftover source key, unfilled target key and shape mismatch."""


# --------------------------------------------------------------------------
# part tables
# --------------------------------------------------------------------------

_NORM_PARAMS = frozenset(
    ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked'))
# (pattern, template, is_norm); ``{L}`` = mmdet layer = stage - 1
_C2_RESNET_RULES: Tuple[Tuple['re.Pattern[str]', str, bool], ...] = tuple(
    (re.compile(pattern), template, is_norm)
    for pattern, template, is_norm in (
        (r'stem\.conv1\.weight', 'conv1.weight', False),
        (r'stem\.conv1\.norm\.(?P<p>\w+)', 'bn1.{p}', True),
        (r'res(?P<S>[2-5])\.(?P<j>\d+)\.conv(?P<k>[123])\.weight',
         'layer{L}.{j}.conv{k}.weight', False),
        (r'res(?P<S>[2-5])\.(?P<j>\d+)\.conv(?P<k>[123])\.norm\.(?P<p>\w+)',
         'layer{L}.{j}.bn{k}.{p}', True),
        (r'res(?P<S>[2-5])\.(?P<j>\d+)\.shortcut\.weight',
         'layer{L}.{j}.downsample.0.weight', False),
        (r'res(?P<S>[2-5])\.(?P<j>\d+)\.shortcut\.norm\.(?P<p>\w+)',
         'layer{L}.{j}.downsample.1.{p}', True),
        (r'res(?P<S>[2-5])\.(?P<j>\d+)\.conv2_offset\.(?P<p>weight|bias)',
         'layer{L}.{j}.conv2.conv_offset.{p}', False),
    ))


def _apply_resnet_rules(key: str, rules, layout: str) -> str:
    """Map ``key`` with the first matching (pattern, template, is_norm)."""
    for pattern, template, is_norm in rules:
        match = pattern.fullmatch(key)
        if match is None:
            continue
        groups = match.groupdict()
        if is_norm and groups['p'] not in _NORM_PARAMS:
            break
        if 'S' in groups:
            groups['L'] = int(groups['S']) - 1
        return template.format(**groups)
    raise KeyError(f'no {layout} ResNet mapping for key {key!r}')


def c2_resnet_key_to_mmdet(key: str) -> str:
    """mmdet ``ResNet`` / ``ResNeXt`` key of a detectron2 ResNet key
    (without ``backbone.bottom_up.``).

    Example:
        >>> c2_resnet_key_to_mmdet('res3.0.shortcut.norm.running_var')
        'layer2.0.downsample.1.running_var'

    Raises:
        KeyError: Not a detectron2 ResNet key.
    """
    return _apply_resnet_rules(key, _C2_RESNET_RULES, 'detectron2')


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


_C2_FPN = re.compile(
    r'(?P<kind>fpn_lateral|fpn_output)(?P<level>\d)\.(?P<p>weight|bias)')
_TOP_BLOCK = re.compile(r'top_blocks?\.p(?P<level>[67])\.(?P<p>weight|bias)')


def c2_fpn_key_to_mmdet(key: str,
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




def _reshape_to_target(key: str, value: Tensor, target: Tensor) -> Tensor:
    """FCOS ``Scale``: centermask2 stores shape (1, ), mmcv ``Scale`` ()."""
    if value.numel() == target.numel() == 1:
        return value.reshape(target.shape)
    return value


@dataclass(frozen=True)
class Part:
    """One part table: source keys under ``src_prefix`` are mapped by
    ``key_fn`` (on the key without the prefix; KeyError = unknown key) and
    prefixed with ``dst_prefix``; ``value_fn(dst_key, value, target)``
    optionally transforms the tensor."""
    name: str
    src_prefix: str
    dst_prefix: str
    key_fn: KeyFn
    value_fn: Optional[ValueFn] = None


@dataclass
class Conversion:
    """Result of a full-model conversion.

    Attributes:
        state_dict (OrderedDict[str, Tensor]): Target keys, target order.
        source_format (str): ``'centermask2'`` or ``'maskrcnn_benchmark'``.
        num_source (int): Tensors in the source state dict.
        per_part (dict[str, int]): Source tensors converted per part.
        dropped (list[tuple[str, str]]): Source keys not converted, with
            the reason.
        added (list[tuple[str, str]]): Target keys not taken from the
            source, with the reason.
        notes (list[str]): Value transformations applied (eps folding,
            dropped background rows, ...).
    """
    state_dict: 'OrderedDict[str, Tensor]'
    source_format: str
    num_source: int = 0
    per_part: Dict[str, int] = field(default_factory=dict)
    dropped: List[Tuple[str, str]] = field(default_factory=list)
    added: List[Tuple[str, str]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    @property
    def num_converted(self) -> int:
        return sum(self.per_part.values())

    @property
    def num_values(self) -> int:
        return sum(v.numel() for v in self.state_dict.values())

    def summary(self) -> str:
        """Human-readable report of the conversion."""
        lines = [
            f'{self.source_format}: {self.num_source} source tensors, '
            f'{self.num_converted} converted, {len(self.dropped)} dropped, '
            f'{len(self.added)} target entries added; '
            f'{len(self.state_dict)} tensors, {self.num_values:,} values'
        ]
        for part, count in self.per_part.items():
            lines.append(f'  {part:12s} {count:5d} tensors')
        for key, reason in self.dropped:
            lines.append(f'  dropped {key}: {reason}')
        counters = [k for k, r in self.added if r == NBT_REASON]
        if counters:
            lines.append(f'  added {len(counters)} BN num_batches_tracked '
                         'counters (= 0)')
        for key, reason in self.added:
            if reason != NBT_REASON:
                lines.append(f'  added {key}: {reason}')
        lines.extend(f'  note: {note}' for note in self.notes)
        return '\n'.join(lines)


NBT_REASON = 'BN counter, absent from FrozenBN (filled with 0)'

# --------------------------------------------------------------------------
# target model and config helpers
# --------------------------------------------------------------------------


def load_config(config):
    """An mmengine ``Config`` from a path, a Config or a plain dict."""
    from mmengine.config import Config
    if isinstance(config, (str, bytes)) or hasattr(config, '__fspath__'):
        return Config.fromfile(str(config))
    if isinstance(config, Config):
        return config
    return Config(dict(config))


def build_target_model(config) -> nn.Module:
    """Build ``config.model`` (weights are not initialised: only the key
    set, shapes and BN settings are used)."""
    import mmcentermask  # noqa: F401  (registers the modules)
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    cfg = load_config(config)
    return MODELS.build(cfg.model)


def _preprocessor_stats(cfg) -> Dict[str, Optional[List[float]]]:
    pre = cfg.model.get('data_preprocessor') or {}
    return dict(
        pixel_mean=list(pre['mean']) if pre.get('mean') is not None else None,
        pixel_std=list(pre['std']) if pre.get('std') is not None else None)


def check_pixel_stats(source: Mapping[str, Tensor],
                      cfg,
                      atol: float = 1e-3) -> List[Tuple[str, str]]:
    """Compare ``pixel_mean`` / ``pixel_std`` buffers of the source with the
    config's ``data_preprocessor`` mean / std.

    Returns:
        list[tuple[str, str]]: The checked keys with the drop reason.

    Raises:
        ConversionError: A buffer differs from the config (or the config
            has no value to compare with); the message names both.
    """
    expected = _preprocessor_stats(cfg)
    dropped = []
    for key, config_value in expected.items():
        if key not in source:
            continue
        stored = [float(v) for v in source[key].reshape(-1).tolist()]
        if config_value is None or len(stored) != len(config_value) or \
                not np.allclose(stored, config_value, rtol=0, atol=atol):
            name = 'mean' if key == 'pixel_mean' else 'std'
            raise ConversionError(
                f'checkpoint {key} = {stored} but the config normalises with '
                f'data_preprocessor.{name} = {config_value}: the model was '
                'trained with other pixel statistics (fix the config)')
        dropped.append((key, f'matches data_preprocessor '
                        f'{"mean" if key == "pixel_mean" else "std"} '
                        f'{config_value}; not a model parameter in mmdet'))
    return dropped


def _backbone_cfg(cfg) -> dict:
    return cfg.model.backbone


def _check_bn_eps(model: nn.Module) -> None:
    """FrozenBN statistics only give the same output in a BN with the same
    eps (1e-5)."""
    from torch.nn.modules.batchnorm import _BatchNorm
    wrong = sorted({
        m.eps
        for m in model.modules()
        if isinstance(m, _BatchNorm) and not np.isclose(m.eps, FROZEN_BN_EPS)
    })
    if wrong:
        raise ConversionError(
            f'target BN layers use eps {wrong}, FrozenBN uses '
            f'{FROZEN_BN_EPS}: set norm_cfg eps=1e-5 in the config')


def _mobilenet_conv2_fill(target: Mapping[str, Tensor],
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

# --------------------------------------------------------------------------
# engine
# --------------------------------------------------------------------------


def strip_module_prefix(source: Mapping[str, Tensor]) -> 'OrderedDict':
    """Remove a DataParallel ``module.`` prefix from every key that has it."""
    return OrderedDict(
        (k[len(MODULE_PREFIX):] if k.startswith(MODULE_PREFIX) else k, v)
        for k, v in source.items())


def run_parts(
    source: Mapping[str, Tensor],
    parts: Sequence[Part],
    target: Mapping[str, Tensor],
    result: Conversion,
    extra_fill: Optional[Mapping[str, Tuple[Tensor, str]]] = None,
    skip: Sequence[str] = ()
) -> Conversion:
    """Map ``source`` with ``parts`` onto the key set of ``target``.

    Args:
        source (Mapping[str, Tensor]): Source tensors (prefix-stripped).
        parts (Sequence[Part]): Part tables; the first whose ``src_prefix``
            starts the key claims it.
        target (Mapping[str, Tensor]): State dict of the target model.
        result (Conversion): Filled in place (dropped keys already recorded
            there are skipped in ``source``).
        extra_fill (Mapping[str, tuple[Tensor, str]], optional): Target
            keys allowed to be absent from the source, with value and reason.
        skip (Sequence[str]): Source keys already handled (dropped).

    Raises:
        ConversionError: Leftover source keys, two source keys onto one
            target key, unfilled target keys, keys the target lacks, or shape
            mismatches; all listed.
    """
    converted: Dict[str, Tensor] = {}
    origin: Dict[str, str] = {}
    leftover: List[str] = []
    clashes: List[str] = []
    for key, value in source.items():
        if key in skip:
            continue
        part = next((p for p in parts if key.startswith(p.src_prefix)), None)
        if part is None:
            leftover.append(key)
            continue
        try:
            new_key = part.dst_prefix + part.key_fn(key[len(part.src_prefix):])
        except KeyError:
            leftover.append(key)
            continue
        if new_key in origin:
            clashes.append(f'{origin[new_key]} and {key} -> {new_key}')
            continue
        if not isinstance(value, Tensor):
            value = torch.as_tensor(np.asarray(value))
        if part.value_fn is not None and new_key in target:
            value = part.value_fn(new_key, value, target[new_key])
        converted[new_key] = value
        origin[new_key] = key
        result.per_part[part.name] = result.per_part.get(part.name, 0) + 1

    added = {}
    for key, value in target.items():
        if key in converted:
            continue
        if key.endswith('.num_batches_tracked') and \
                key[:-len('num_batches_tracked')] + 'running_var' in converted:
            added[key] = (torch.zeros_like(value), NBT_REASON)
        elif extra_fill and key in extra_fill:
            added[key] = extra_fill[key]

    missing = [k for k in target if k not in converted and k not in added]
    extra = [k for k in converted if k not in target]
    shapes = [
        f'{origin[k]} -> {k}: {tuple(converted[k].shape)} vs target '
        f'{tuple(target[k].shape)}' for k in converted
        if k in target and converted[k].shape != target[k].shape
    ]
    problems = []
    if leftover:
        problems.append(f'{len(leftover)} source keys left over (no part '
                        f'table maps them): {leftover}')
    if clashes:
        problems.append(f'{len(clashes)} target keys claimed twice: {clashes}')
    if missing:
        problems.append(f'{len(missing)} target keys not filled: {missing}')
    if extra:
        problems.append(f'{len(extra)} converted keys the target model does '
                        f'not have: {[(origin[k], k) for k in extra]}')
    if shapes:
        problems.append(f'{len(shapes)} shape mismatches: {shapes}')
    if problems:
        raise ConversionError(
            f'{result.source_format} checkpoint does not convert onto the '
            'model of this config (wrong config for the checkpoint?):\n  ' +
            '\n  '.join(problems))

    result.num_source = len(source)
    for key in target:
        if key in converted:
            result.state_dict[key] = converted[key]
        else:
            value, reason = added[key]
            result.state_dict[key] = value
            result.added.append((key, reason))
    return result


# --------------------------------------------------------------------------
# centermask2
# --------------------------------------------------------------------------


def c2_backbone_part(backbone_cfg: dict) -> Part:
    """Part table of the ``backbone.bottom_up.`` keys for the config's
    backbone type."""
    kind = backbone_cfg['type']
    if kind in VOVNET_TYPES:
        key_fn = c2_vovnet_key_to_mmdet
    elif kind in RESNET_TYPES:
        key_fn = c2_resnet_key_to_mmdet
    elif kind in MOBILENET_TYPES:
        key_fn = mobilenetv2_key_to_mmdet
    else:
        raise ConversionError(
            f'no centermask2 key table for backbone type {kind!r}; known: '
            f'{VOVNET_TYPES + RESNET_TYPES + MOBILENET_TYPES}')
    return Part('backbone', 'backbone.bottom_up.', 'backbone.', key_fn)


def c2_parts(cfg) -> List[Part]:
    """The part tables of a centermask2 checkpoint for this config."""
    num_ins = len(cfg.model.neck['in_channels'])
    return [
        c2_backbone_part(_backbone_cfg(cfg)),
        Part('fpn', 'backbone.', 'neck.',
             lambda k: c2_fpn_key_to_mmdet(k, num_ins=num_ins)),
        Part('fcos', 'proposal_generator.fcos_head.', 'bbox_head.',
             c2_fcos_head_key_to_mmdet, _reshape_to_target),
        Part('mask_branch', 'roi_heads.', 'roi_head.', _mask_branch_key_fn),
    ]


def _mask_branch_key_fn(key: str) -> str:
    new_key = convert_mask_branch_key('roi_heads.' + key, dst_prefix='')
    if new_key is None:
        raise KeyError(key)
    return new_key


def _prepare(config, target: Optional[Mapping[str, Tensor]]):
    cfg = load_config(config)
    notes: List[str] = []
    if target is None:
        model = build_target_model(cfg)
        _check_bn_eps(model)
        target = model.state_dict()
    return cfg, target, notes


def _extra_fill(cfg, target: Mapping[str, Tensor]) -> Dict[str, tuple]:
    if _backbone_cfg(cfg)['type'] in MOBILENET_TYPES:
        return {
            k: (v, MNV2_CONV2_REASON)
            for k, v in _mobilenet_conv2_fill(target, _backbone_cfg(
                cfg)).items()
        }
    return {}


def convert_centermask2(
        source: Mapping[str, Tensor],
        config,
        target: Optional[Mapping[str, Tensor]] = None) -> Conversion:
    """Convert a centermask2 ``model`` state dict for ``config``.

    Args:
        source (Mapping[str, Tensor]): centermask2 state dict (tensors or
            numpy arrays), optionally ``module.``-prefixed.
        config (str | Config | dict): mmcentermask config (path or object)
            whose model is the target.
        target (Mapping[str, Tensor], optional): State dict of the target
            model, to skip building it (the BN eps check is skipped then).

    Returns:
        Conversion: The converted state dict (target key order) and the
        bookkeeping.

    Raises:
        ConversionError: Pixel statistics that contradict the config,
            leftover source keys, unfilled target keys or shape mismatches.
    """
    cfg, target, notes = _prepare(config, target)
    source = strip_module_prefix(source)
    result = Conversion(OrderedDict(), 'centermask2', notes=notes)
    result.dropped.extend(check_pixel_stats(source, cfg))
    return run_parts(
        source,
        c2_parts(cfg),
        target,
        result,
        extra_fill=_extra_fill(cfg, target),
        skip=[k for k, _ in result.dropped])


# --------------------------------------------------------------------------
# checkpoint files
# --------------------------------------------------------------------------


def dataset_classes(cfg, num_classes: Optional[int]) -> Optional[tuple]:
    """Class names for ``meta.dataset_meta``: the test dataset's metainfo
    classes if the config sets them, else COCO's 80 in contiguous order."""
    try:
        classes = cfg.test_dataloader.dataset.metainfo.classes
    except (AttributeError, KeyError, TypeError):
        classes = None
    if classes is None and num_classes in (None, len(COCO_CLASSES)):
        classes = COCO_CLASSES
    return tuple(classes) if classes is not None else None


def save_mmengine_checkpoint(result: Conversion,
                             dst: str,
                             config,
                             src: Optional[str] = None) -> dict:
    """Write ``{'state_dict', 'meta'}`` as ``tools/test.py`` expects.

    Returns:
        dict: The saved checkpoint.
    """
    cfg = load_config(config)
    num_classes = cfg.model.get('num_classes')
    meta = dict(
        converted_from=osp.abspath(src) if src else None,
        source_format=result.source_format,
        config=getattr(cfg, 'filename', None),
        created=datetime.datetime.now().isoformat(timespec='seconds'),
        dropped=list(result.dropped),
        added=[k for k, r in result.added if r != NBT_REASON],
        notes=list(result.notes))
    classes = dataset_classes(cfg, num_classes)
    if classes is not None:
        meta['dataset_meta'] = dict(classes=classes)
    try:
        from mmcentermask.version import __version__
        meta['mmcentermask_version'] = __version__
    except ImportError:  # pragma: no cover
        pass
    checkpoint = dict(state_dict=result.state_dict, meta=meta)
    torch.save(checkpoint, dst)
    return checkpoint


Converter = Callable[..., Conversion]


def convert_checkpoint_file(src: str,
                            dst: str,
                            config,
                            converter: Converter = convert_centermask2,
                            **kwargs) -> Conversion:
    """Load ``src``, convert it for ``config`` and save the MMEngine
    checkpoint ``dst``. Nothing is written when the conversion fails."""
    source = load_source_state_dict(src)
    result = converter(source, config, **kwargs)
    save_mmengine_checkpoint(result, dst, config, src=src)
    return result


def run_conversion(src: str,
                   dst: str,
                   config,
                   converter: Converter = convert_centermask2) -> int:
    """Command-line conversion: load ``src``, convert it for ``config``,
    save ``dst``, printing progress and a summary.

    Returns:
        int: exit status, 0 on success, 1 when the conversion failed (the
        error, with the lists of keys, is printed and nothing is written).
    """
    print(f'Loading {src}')
    source = load_source_state_dict(src)
    print(f'{len(source)} tensors; building the model of {config}')
    try:
        result = converter(source, config)
    except ConversionError as err:
        print(f'Conversion failed, nothing written:\n{err}', file=sys.stderr)
        return 1
    print(result.summary())
    save_mmengine_checkpoint(result, dst, config, src=src)
    num_params = sum(v.numel() for k, v in result.state_dict.items()
                     if not k.endswith(('running_mean', 'running_var',
                                        'num_batches_tracked')))
    print(f'Saved {dst}: {len(result.state_dict)} tensors, '
          f'{num_params:,} parameters (without BN statistics)')
    return 0


__all__ = [
    'COCO_CLASSES', 'run_conversion', 'ConversionError', 'Conversion', 'Part',
    'c2_resnet_key_to_mmdet', 'mobilenetv2_key_to_mmdet',
    'c2_fpn_key_to_mmdet', 'c2_parts', 'convert_centermask2',
    'check_pixel_stats', 'build_target_model', 'run_parts',
    'save_mmengine_checkpoint', 'convert_checkpoint_file',
    'load_source_state_dict'
]
