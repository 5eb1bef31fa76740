"""The conversion engine shared by every source format.

A conversion maps a source state dict with *part tables* (:class:`Part`:
source prefix, target prefix, key function, optional value function) onto the
key set of a target model. Every source key must be claimed by exactly one
part (or be dropped with a reason) and, when the target state dict is known,
every target key must be filled; otherwise :class:`ConversionError` lists
every problem and nothing is returned. The result is a :class:`Conversion`.
"""
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import (Callable, Dict, List, Mapping, Optional, Sequence, Tuple)

import numpy as np
import torch
from torch import Tensor

MODULE_PREFIX = 'module.'
#: detectron2 FrozenBN eps (= the BN eps of the converted models).
FROZEN_BN_EPS = 1e-5
NUM_BATCHES_TRACKED_REASON = ('BN counter, absent from FrozenBN (filled '
                              'with 0)')

KeyFn = Callable[[str], str]
ValueFn = Callable[[str, Tensor, Tensor], Tensor]


class ConversionError(ValueError):
    """The source does not convert onto the target; the message lists every
    leftover source key, unfilled target key and shape mismatch."""


@dataclass(frozen=True)
class Part:
    """One part table: source keys under ``src_prefix`` are mapped by
    ``key_fn`` (on the key without the prefix; KeyError = unknown key) and
    prefixed with ``dst_prefix``; ``value_fn(dst_key, value, target)``
    optionally transforms the tensor (``target`` is None when the target
    state dict is unknown)."""
    name: str
    src_prefix: str
    dst_prefix: str
    key_fn: KeyFn
    value_fn: Optional[ValueFn] = None


@dataclass
class Conversion:
    """Result of a conversion.

    Attributes:
        state_dict (OrderedDict[str, Tensor]): Target keys (target order
            when the target is known, else source order).
        source_format (str): e.g. ``'centermask2'``, ``'maskrcnn_benchmark'``,
            ``'timm'``.
        num_source (int): Tensors in the source state dict.
        per_part (dict[str, int]): Source tensors converted per part.
        dropped (list[tuple[str, str]]): Source keys not converted, with
            the reason.
        added (list[tuple[str, str]]): Target keys not taken from the
            source, with the reason.
        notes (list[str]): Value transformations applied (eps folding,
            dropped background rows, ...).
        num_clamped (int): Running variances clamped by the
            maskrcnn-benchmark FrozenBN eps fold (:func:`fold_frozen_bn_eps`).
    """
    state_dict: 'OrderedDict[str, Tensor]'
    source_format: str
    num_source: int = 0
    per_part: Dict[str, int] = field(default_factory=dict)
    dropped: List[Tuple[str, str]] = field(default_factory=list)
    added: List[Tuple[str, str]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    num_clamped: int = 0

    @property
    def num_converted(self) -> int:
        """Source tensors mapped onto target keys."""
        return sum(self.per_part.values())

    @property
    def num_values(self) -> int:
        """Values in the converted state dict."""
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
        counters = [
            k for k, r in self.added if r == NUM_BATCHES_TRACKED_REASON
        ]
        if counters:
            lines.append(f'  added {len(counters)} BN num_batches_tracked '
                         'counters (= 0)')
        for key, reason in self.added:
            if reason != NUM_BATCHES_TRACKED_REASON:
                lines.append(f'  added {key}: {reason}')
        lines.extend(f'  note: {note}' for note in self.notes)
        return '\n'.join(lines)


def strip_module_prefix(source: Mapping[str, Tensor]) -> 'OrderedDict':
    """Remove a DataParallel ``module.`` prefix from every key that has it."""
    return OrderedDict(
        (k[len(MODULE_PREFIX):] if k.startswith(MODULE_PREFIX) else k, v)
        for k, v in source.items())


def fold_frozen_bn_eps(running_var: Tensor,
                       eps: float = FROZEN_BN_EPS) -> Tuple[Tensor, int]:
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


def _map_keys(source: Mapping[str, Tensor], parts: Sequence[Part],
              target: Optional[Mapping[str, Tensor]], result: Conversion,
              skip: Sequence[str]) -> Tuple[Dict, Dict, List, List]:
    """Map every source key: (converted, origin, leftover, clashes)."""
    converted: Dict[str, Tensor] = {}
    origin: Dict[str, str] = {}
    leftover: List[str] = []
    clashes: List[str] = []
    for key, value in source.items():
        if key in skip:
            continue
        part = next((p for p in parts if key.startswith(p.src_prefix)), None)
        try:
            if part is None:
                raise KeyError(key)
            new_key = part.dst_prefix + part.key_fn(key[len(part.src_prefix):])
        except KeyError:
            leftover.append(key)
            continue
        if new_key in origin:
            clashes.append(f'{origin[new_key]!r} and {key!r} both map to '
                           f'{new_key!r}')
            continue
        if not isinstance(value, Tensor):
            value = torch.as_tensor(np.asarray(value))
        if part.value_fn is not None:
            reference = None if target is None else target.get(new_key)
            value = part.value_fn(new_key, value, reference)
        converted[new_key] = value
        origin[new_key] = key
        result.per_part[part.name] = result.per_part.get(part.name, 0) + 1
    return converted, origin, leftover, clashes


def _added_entries(
    converted: Mapping[str, Tensor], target_keys: Mapping[str, Tensor],
    extra_fill: Optional[Mapping[str, Tuple[Tensor, str]]]
) -> Dict[str, Tuple[Tensor, str]]:
    """Target entries not in the source: BN counters (where the source has
    the running statistics) and ``extra_fill``."""
    added = {}
    for key, value in target_keys.items():
        if key in converted:
            continue
        if key.endswith('.num_batches_tracked') and \
                key[:-len('num_batches_tracked')] + 'running_var' in converted:
            added[key] = (torch.zeros_like(value), NUM_BATCHES_TRACKED_REASON)
        elif extra_fill and key in extra_fill:
            added[key] = extra_fill[key]
    return added


def _counters_of(converted: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """A zero ``num_batches_tracked`` for every converted running variance
    (the target key set when the target model is unknown)."""
    return {
        key[:-len('running_var')] + 'num_batches_tracked':
        torch.tensor(0, dtype=torch.long)
        for key in converted if key.endswith('.running_var')
    }


def run_parts(source: Mapping[str, Tensor],
              parts: Sequence[Part],
              target: Optional[Mapping[str, Tensor]],
              result: Conversion,
              extra_fill: Optional[Mapping[str, Tuple[Tensor, str]]] = None,
              skip: Sequence[str] = ()) -> Conversion:
    """Map ``source`` with ``parts`` onto the key set of ``target``.

    Args:
        source (Mapping[str, Tensor]): Source tensors (prefix-stripped).
        parts (Sequence[Part]): Part tables; the first whose ``src_prefix``
            starts the key claims it.
        target (Mapping[str, Tensor], optional): State dict of the target
            model. None: only the source side is checked and BN counters
            are added next to every running variance.
        result (Conversion): Filled in place.
        extra_fill (Mapping[str, tuple[Tensor, str]], optional): Target
            keys allowed to be absent from the source, with value and reason.
        skip (Sequence[str]): Source keys already handled (dropped).

    Raises:
        ConversionError: Leftover source keys, two source keys onto one
            target key, unfilled target keys, keys the target lacks, or shape
            mismatches; all listed.
    """
    converted, origin, leftover, clashes = _map_keys(source, parts, target,
                                                     result, skip)
    target_keys = target if target is not None else _counters_of(converted)
    added = _added_entries(converted, target_keys, extra_fill)
    problems = []
    if leftover:
        problems.append(f'{len(leftover)} source keys left over (no part '
                        f'table maps these {len(leftover)} keys): {leftover}')
    if clashes:
        problems.append(f'{len(clashes)} target keys claimed twice: {clashes}')
    if target is not None:
        problems.extend(_target_problems(converted, origin, target, added))
    if problems:
        raise ConversionError(
            f'{result.source_format} checkpoint does not convert onto the '
            'target model; the weights do not fit the target (wrong config '
            'or arch for the checkpoint?):\n  ' + '\n  '.join(problems))
    result.num_source = len(source)
    order = list(target) if target is not None else list(converted) + [
        k for k in added if k not in converted
    ]
    for key in order:
        if key in converted:
            result.state_dict[key] = converted[key]
        else:
            value, reason = added[key]
            result.state_dict[key] = value
            result.added.append((key, reason))
    return result


def _target_problems(converted: Mapping[str, Tensor], origin: Mapping[str,
                                                                      str],
                     target: Mapping[str, Tensor],
                     added: Mapping[str, tuple]) -> List[str]:
    """Missing target keys, extra converted keys and shape mismatches."""
    missing = [k for k in target if k not in converted and k not in added]
    extra = [k for k in converted if k not in target]
    shapes = [
        f'{origin[k]} -> {k}: {tuple(converted[k].shape)} vs target '
        f'{tuple(target[k].shape)}' for k in converted
        if k in target and converted[k].shape != target[k].shape
    ]
    problems = []
    if missing:
        problems.append(f'{len(missing)} target keys not filled (missing '
                        f'from the source): {missing}')
    if extra:
        problems.append(f'{len(extra)} converted keys the target model does '
                        f'not have: {[(origin[k], k) for k in extra]}')
    if shapes:
        problems.append(f'{len(shapes)} shape mismatches: {shapes}')
    return problems
