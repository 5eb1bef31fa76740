"""Wrong weights are an error: refuse a checkpoint that mostly does not fit.

MMEngine loads weights with ``strict=False`` (``tools/test.py``, ``load_from``,
the demo's ``DetInferencer``, ``init_cfg=dict(type='Pretrained')``) and only
logs the missing and unexpected keys. A checkpoint of another model, or an
authors' checkpoint that was not converted, then "loads": mAP 0 at test time,
or a backbone trained from scratch, and exit code 0.

:func:`guard_weight_loading` registers a ``load_state_dict`` pre-hook on a
model (we put it on ``CenterMask`` and ``VoVNet``). Before any tensor is copied
it compares the checkpoint's keys under the module's prefix with the module's
own and raises :class:`WeightMismatchError` when fewer than
``MMCM_MIN_WEIGHT_MATCH`` (default 0.5) of the module's tensors would be filled
(present with the same shape). The message counts the missing, unexpected and
shape-mismatched keys, shows examples, and names the
converter when the keys look like an authors' checkpoint. Legitimate partial
loads pass: a different ``num_classes`` leaves all but a few classifier tensors
matching; set ``MMCM_MIN_WEIGHT_MATCH=0`` to switch the check off.

The same pre-hook refuses NaN or infinite values in the tensors it would load
(:class:`NonFiniteWeightsError`), e.g. a checkpoint written after the training
diverged.
"""
import math
import os
from typing import Dict, List, Optional

import torch
from torch import nn

#: Environment variable: the smallest fraction of a model's tensors a
#: checkpoint must fill.
MIN_MATCH_ENV = 'MMCM_MIN_WEIGHT_MATCH'
DEFAULT_MIN_MATCH = 0.5

# Key patterns of unconverted source checkpoints -> the converter to run.
_SOURCES = (
    (('backbone.bottom_up.', 'proposal_generator.', 'roi_heads.mask_head.',
      'roi_heads.maskiou_head.'),
     'an unconverted centermask2 (detectron2) CenterMask checkpoint: convert '
     'it with `python tools/model_converters/centermask2_to_mmdet.py SRC DST '
     '--config CONFIG`'),
    (('module.backbone.body.', 'backbone.body.', 'module.rpn.', 'rpn.head.'),
     'an unconverted maskrcnn-benchmark CenterMask checkpoint: convert it '
     'with `python tools/model_converters/maskrcnn_benchmark_to_mmdet.py SRC '
     'DST --config CONFIG`'),
    (('stem.stem_', 'stage2.OSA', 'stages.0.blocks.', 'head.fc.'),
     'unconverted ImageNet VoVNet weights (centermask2, maskrcnn-benchmark '
     'or timm layout): convert them with `python '
     'tools/model_converters/vovnet2mmdet.py SRC DST --arch ARCH` and use '
     "them as backbone init_cfg=dict(type='Pretrained', ...)"),
)


class WeightMismatchError(RuntimeError):
    """A checkpoint fills too few of a model's tensors."""


class NonFiniteWeightsError(ValueError):
    """A checkpoint holds NaN or infinite weights."""


def min_match_from_env() -> float:
    value = os.environ.get(MIN_MATCH_ENV)
    if value is None or value.strip() == '':
        return DEFAULT_MIN_MATCH
    try:
        fraction = float(value)
    except ValueError:
        fraction = math.nan
    if not 0 <= fraction <= 1:
        raise ValueError(
            f'{MIN_MATCH_ENV}={value!r}: give a fraction in [0, 1] (0 '
            f'switches the check off; default {DEFAULT_MIN_MATCH})')
    return fraction


def _examples(keys: List[str], n: int = 3) -> str:
    shown = ', '.join(keys[:n])
    return shown + (f', ... ({len(keys)} in all)' if len(keys) > n else '')


def likely_source(keys) -> Optional[str]:
    """The converter hint for ``keys`` that look like an authors' file."""
    for patterns, hint in _SOURCES:
        if any(
                k.startswith(patterns) or any(p in k for p in patterns)
                for k in keys):
            return hint
    return None


def check_state_dict(module: nn.Module,
                     state_dict: Dict[str, torch.Tensor],
                     prefix: str = '',
                     min_match: Optional[float] = None) -> None:
    """Raise if ``state_dict`` (under ``prefix``) mostly misses ``module``.

    Args:
        module (nn.Module): The model that is about to load the weights.
        state_dict (dict): Checkpoint tensors, keys as ``prefix + module key``.
        prefix (str): The module's prefix in ``state_dict``.
        min_match (float, optional): Smallest fraction of ``module``'s tensors
        that must
            be present with the same shape; ``None`` reads
            ``MMCM_MIN_WEIGHT_MATCH``.

    Raises:
        WeightMismatchError: too few tensors match.
        NonFiniteWeightsError: a matching tensor holds NaN or infinite values.
    """
    if min_match is None:
        min_match = min_match_from_env()
    own = {
        prefix + k: v
        for k, v in module.state_dict().items()
        if not k.endswith('num_batches_tracked')
    }
    theirs = {k: v for k, v in state_dict.items() if k.startswith(prefix)}
    matched, shape_mismatch, bad = [], [], []
    for key, value in own.items():
        other = theirs.get(key)
        if not isinstance(other, torch.Tensor):
            continue
        if tuple(other.shape) != tuple(value.shape):
            shape_mismatch.append(
                f'{key} {tuple(other.shape)} vs {tuple(value.shape)}')
            continue
        matched.append(key)
        if other.is_floating_point() and not torch.isfinite(other).all():
            bad.append(key)
    name = type(module).__name__
    if bad:
        raise NonFiniteWeightsError(
            f'The checkpoint for {name} holds NaN or infinite values in '
            f'{len(bad)} of {len(matched)} tensors ({_examples(bad)}); it was '
            'probably saved after the training diverged. Use an earlier '
            'checkpoint; train again with a lower learning rate or gradient '
            'clipping.')
    if not own or len(matched) >= min_match * len(own):
        return
    missing = [k for k in own if k not in theirs]
    unexpected = [
        k for k in theirs
        if k not in own and not k.endswith('num_batches_tracked')
    ]
    cause = likely_source(list(theirs)) or (
        'a checkpoint of another model or architecture (check the config and '
        'the checkpoint belong together)')
    raise WeightMismatchError(
        f'The checkpoint fills only {len(matched)} of the {len(own)} tensors '
        f'of {name} ({len(missing)} missing, {len(unexpected)} unexpected, '
        f'{len(shape_mismatch)} with another shape; missing e.g. '
        f'{_examples(missing) or "-"}; unexpected e.g. '
        f'{_examples(unexpected) or "-"}; shapes e.g. '
        f'{_examples(shape_mismatch) or "-"}). Likely cause: {cause}. If a '
        f'partial load is what you want, set {MIN_MATCH_ENV} to the fraction '
        f'that must match (now {min_match:g}; 0 switches this check off).')


def _pre_hook(module, state_dict, prefix, local_metadata, strict, missing_keys,
              unexpected_keys, error_msgs):
    check_state_dict(module, state_dict, prefix)


def guard_weight_loading(module: nn.Module) -> None:
    """Run :func:`check_state_dict` whenever ``module`` loads a state dict.

    Works for ``module.load_state_dict`` and MMEngine's ``load_state_dict`` /
    ``load_checkpoint`` (both call ``_load_from_state_dict``, which runs the
    pre-hooks before copying anything).
    """
    module.register_load_state_dict_pre_hook(_pre_hook)
