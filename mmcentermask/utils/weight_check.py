"""Wrong weights are an error: refuse a checkpoint that does not fit a model.

MMEngine loads weights with ``strict=False`` (``tools/test.py``, ``load_from``,
the demo's ``DetInferencer``, ``init_cfg=dict(type='Pretrained')``) and only
logs the missing and unexpected keys. A checkpoint of another model, or an
authors' checkpoint that was not converted, then "loads": mAP 0 at test time,
or a backbone trained from scratch, and exit code 0.

:func:`guard_weight_loading` registers a ``load_state_dict`` pre-hook on a
model (we put it on ``CenterMask`` and ``VoVNet``). Before any tensor is copied
it compares the checkpoint's keys under the module's prefix with the module's
own (:func:`compare_state_dict`) and raises :class:`WeightMismatchError` when
too few of the module's tensors would be filled (present with the same shape).
How many must be filled depends on what the weights are for:

* **every tensor** for a whole model (an MMEngine ``BaseModel``: the detector)
  whose ``init_weights()`` has not run: ``tools/test.py``, ``tools/demo.py``,
  ``init_detector``, ``DetInferencer`` and the ONNX export load into such a
  model, and a tensor the checkpoint does not fill keeps the random value of
  the layer's constructor. A checkpoint of a related model (point CenterMask
  with the same backbone fills about 70% of CenterMask's tensors) is refused
  there, with the counts per module.
* **half** (``DEFAULT_MIN_MATCH``) otherwise: training (the Runner runs
  ``init_weights()`` before ``load_from``, so the tensors a partial load leaves
  keep their designed initialisation: fine-tuning with another
  ``num_classes``, or from a related model) and backbones
  (``init_cfg=dict(type='Pretrained')`` on ``VoVNet``, where e.g. DCN offsets
  are not in ImageNet weights).

``MMCM_MIN_WEIGHT_MATCH`` (a fraction in [0, 1]) replaces both defaults; ``0``
switches the check off. The message counts the missing, unexpected and
shape-mismatched keys per module, shows examples, names the converter when the
keys look like an authors' checkpoint, and names ``num_classes`` when the
classifier shapes say it changed.

The same pre-hook refuses NaN or infinite values in the tensors it would load
(:class:`NonFiniteWeightsError`), e.g. a checkpoint written after the training
diverged.

:func:`check_resume_fit` is the stricter rule for ``--resume``
(:class:`ResumeMismatchError`): resuming continues a run, so the checkpoint
must fill every tensor with the same shape, whatever the environment says.
"""
import math
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from mmengine.model import BaseModel
from torch import nn

#: Environment variable: the smallest fraction of a model's tensors a
#: checkpoint must fill.
MIN_MATCH_ENV = 'MMCM_MIN_WEIGHT_MATCH'
#: What must match when a partial load can be meant (training, backbones).
DEFAULT_MIN_MATCH = 0.5

Shape = Tuple[int, ...]

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


class ResumeMismatchError(WeightMismatchError):
    """``--resume`` from a checkpoint whose tensors do not fit the model."""


class NonFiniteWeightsError(ValueError):
    """A checkpoint holds NaN or infinite weights."""


@dataclass
class WeightFill:
    """How a checkpoint's tensors fill a module's tensors.

    Keys are full checkpoint keys (``prefix`` + module key);
    ``num_batches_tracked`` buffers are left out on both sides.

    Attributes:
        own (dict[str, tuple]): The module's tensors and their shapes.
        matched (list[str]): Present in the checkpoint with the same shape.
        missing (list[str]): The module's tensors the checkpoint lacks.
        unexpected (list[str]): Checkpoint tensors the module does not have.
        reshaped (list[tuple]): ``(key, checkpoint shape, model shape)`` of
            tensors present with another shape.
        non_finite (list[str]): Matched tensors holding NaN or infinity.
    """
    own: Dict[str, Shape]
    matched: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    reshaped: List[Tuple[str, Shape, Shape]] = field(default_factory=list)
    non_finite: List[str] = field(default_factory=list)


def compare_state_dict(module: nn.Module,
                       state_dict: Mapping[str, torch.Tensor],
                       prefix: str = '') -> WeightFill:
    """Which of ``module``'s tensors ``state_dict`` fills.

    Args:
        module (nn.Module): The model that is about to load the weights.
        state_dict (Mapping[str, Tensor]): Checkpoint tensors, keys as
            ``prefix + module key``.
        prefix (str): The module's prefix in ``state_dict``.

    Returns:
        WeightFill: matched, missing, unexpected and reshaped keys.
    """
    fill = WeightFill(
        own={
            prefix + k: tuple(v.shape)
            for k, v in module.state_dict().items()
            if not k.endswith('num_batches_tracked')
        })
    for key, value in state_dict.items():
        if key.startswith(prefix) and key not in fill.own and (
                not key.endswith('num_batches_tracked')):
            fill.unexpected.append(key)
    for key, shape in fill.own.items():
        other = state_dict.get(key)
        if not isinstance(other, torch.Tensor):
            fill.missing.append(key)
        elif tuple(other.shape) != shape:
            fill.reshaped.append((key, tuple(other.shape), shape))
        else:
            fill.matched.append(key)
            if other.is_floating_point() and not torch.isfinite(other).all():
                fill.non_finite.append(key)
    return fill


def min_match_from_env(default: float = DEFAULT_MIN_MATCH) -> float:
    """``MMCM_MIN_WEIGHT_MATCH`` as a fraction, ``default`` when unset.

    Raises:
        ValueError: the value is not a number in [0, 1].
    """
    value = os.environ.get(MIN_MATCH_ENV)
    if value is None or value.strip() == '':
        return default
    try:
        fraction = float(value)
    except ValueError:
        fraction = math.nan
    if not 0 <= fraction <= 1:
        raise ValueError(
            f'{MIN_MATCH_ENV}={value!r}: give a fraction in [0, 1] (0 '
            f'switches the check off; default {DEFAULT_MIN_MATCH} for '
            'training and backbones, 1 for testing)')
    return fraction


def runs_on_loaded_weights_only(module: nn.Module) -> bool:
    """Whether ``module`` is a whole model whose ``init_weights()`` never ran.

    Test, demo and export load into such a model (MMEngine's ``Runner.test``,
    ``init_detector`` and ``DetInferencer`` build the model and load the
    checkpoint); training runs ``init_weights()`` first.
    """
    return isinstance(module,
                      BaseModel) and not getattr(module, 'is_init', False)


def required_fraction(module: nn.Module) -> float:
    """The fraction of ``module``'s tensors a checkpoint must fill now."""
    return min_match_from_env(
        1.0 if runs_on_loaded_weights_only(module) else DEFAULT_MIN_MATCH)


def _examples(keys: List[str], n: int = 3) -> str:
    shown = ', '.join(keys[:n])
    return shown + (f', ... ({len(keys)} in all)' if len(keys) > n else '')


def _shape_examples(reshaped: List[Tuple[str, Shape, Shape]],
                    n: int = 3) -> str:
    return _examples([
        f'{key} {theirs} in the checkpoint vs {ours} in the model'
        for key, theirs, ours in reshaped
    ], n)


def likely_source(keys) -> Optional[str]:
    """The converter hint for ``keys`` that look like an authors' file."""
    for patterns, hint in _SOURCES:
        if any(
                k.startswith(patterns) or any(p in k for p in patterns)
                for k in keys):
            return hint
    return None


def fill_per_module(fill: WeightFill,
                    prefix: str = '') -> Dict[str, Tuple[int, int]]:
    """``{part: (filled, all)}`` tensor counts of each top-level part of the
    module (``backbone``, ``neck``, ``bbox_head``, ...), in module order."""
    matched = set(fill.matched)
    counts: Dict[str, Tuple[int, int]] = OrderedDict()
    for key in fill.own:
        part = key[len(prefix):].split('.', 1)[0]
        filled, total = counts.get(part, (0, 0))
        counts[part] = (filled + (key in matched), total + 1)
    return counts


def _format_per_module(counts: Dict[str, Tuple[int, int]]) -> str:
    """``'backbone 132/132, neck 0/16, ...'``."""
    return ', '.join(f'{part} {filled}/{total}'
                     for part, (filled, total) in counts.items())


def _owner_num_classes(module: nn.Module, key: str) -> Optional[int]:
    """``num_classes`` of the nearest module on ``key``'s path that has
    one."""
    parts = key.split('.')[:-1]
    for depth in range(len(parts), -1, -1):
        try:
            owner = module.get_submodule('.'.join(parts[:depth]))
        except AttributeError:
            continue
        num_classes = getattr(owner, 'num_classes', None)
        if isinstance(num_classes, int):
            return num_classes
    return None


def num_classes_change(module: nn.Module,
                       fill: WeightFill,
                       prefix: str = '') -> Optional[Tuple[int, int]]:
    """``(checkpoint's, model's)`` number of classes when every reshaped
    tensor is a per-class layer whose first dimension follows
    ``num_classes``; ``None`` otherwise (or when nothing is reshaped)."""
    change = None
    for key, theirs, ours in fill.reshaped:
        num_classes = _owner_num_classes(module, key[len(prefix):])
        if (num_classes is None or len(theirs) != len(ours)
                or theirs[1:] != ours[1:]
                or ours[0] - num_classes not in (0, 1)):
            return None
        found = (theirs[0] - (ours[0] - num_classes), num_classes)
        if change not in (None, found):
            return None
        change = found
    return change


def _likely_cause(module: nn.Module, fill: WeightFill, prefix: str) -> str:
    """The most likely reason ``fill`` is incomplete, in words."""
    source = likely_source(fill.unexpected + fill.matched)
    if source:
        return source
    classes = num_classes_change(module, fill, prefix)
    if classes is not None and not fill.missing:
        return (f'num_classes differs: the checkpoint has {classes[0]} '
                f'classes, the model {classes[1]}')
    whole = [
        part
        for part, (filled, total) in fill_per_module(fill, prefix).items()
        if filled == total
    ]
    if fill.matched and whole:
        return (f'a checkpoint of another model that shares the '
                f'{", ".join(whole)} of this one (check that the config and '
                'the checkpoint belong together)')
    return ('a checkpoint of another model or architecture (check the config '
            'and the checkpoint belong together)')


def _fill_summary(module: nn.Module, fill: WeightFill, prefix: str) -> str:
    """The counts and examples of a ``WeightFill`` (one sentence)."""
    name = type(module).__name__
    return (f'The checkpoint fills only {len(fill.matched)} of the '
            f'{len(fill.own)} tensors of {name} ({len(fill.missing)} missing, '
            f'{len(fill.unexpected)} unexpected, {len(fill.reshaped)} with '
            f'another shape; filled per module: '
            f'{_format_per_module(fill_per_module(fill, prefix))}; '
            f'missing e.g. {_examples(fill.missing) or "-"}; unexpected e.g. '
            f'{_examples(fill.unexpected) or "-"}; shapes e.g. '
            f'{_shape_examples(fill.reshaped) or "-"}).')


def check_state_dict(module: nn.Module,
                     state_dict: Mapping[str, torch.Tensor],
                     prefix: str = '',
                     min_match: Optional[float] = None) -> None:
    """Raise if ``state_dict`` (under ``prefix``) fills too little of
    ``module``.

    Args:
        module (nn.Module): The model that is about to load the weights.
        state_dict (Mapping[str, Tensor]): Checkpoint tensors, keys as
            ``prefix + module key``.
        prefix (str): The module's prefix in ``state_dict``.
        min_match (float, optional): Smallest fraction of ``module``'s
            tensors that must be present with the same shape; ``None`` gives
            :func:`required_fraction` (``MMCM_MIN_WEIGHT_MATCH``, else 1 for a
            model run on these weights only, 0.5 otherwise).

    Raises:
        WeightMismatchError: too few tensors match.
        NonFiniteWeightsError: a matching tensor holds NaN or infinite values.
    """
    if min_match is None:
        min_match = required_fraction(module)
    fill = compare_state_dict(module, state_dict, prefix)
    if fill.non_finite:
        raise NonFiniteWeightsError(
            f'The checkpoint for {type(module).__name__} holds NaN or '
            f'infinite values in {len(fill.non_finite)} of '
            f'{len(fill.matched)} tensors ({_examples(fill.non_finite)}); it '
            'was probably saved after the training diverged. Use an earlier '
            'checkpoint; train again with a lower learning rate or gradient '
            'clipping.')
    if not fill.own or len(fill.matched) >= min_match * len(fill.own):
        return
    if runs_on_loaded_weights_only(module):
        purpose = (
            f' {type(module).__name__} runs on these weights alone (its '
            'init_weights() has not run, as in tools/test.py, tools/demo.py, '
            'init_detector, DetInferencer and the ONNX export), so every '
            'tensor the checkpoint does not fill keeps a random value.')
        partial = (
            'Test or run with the checkpoint trained with this config; to '
            'fine-tune from this one, give it as load_from in training '
            '(partial loads pass there). If a partial load is what you want '
            'here')
    else:
        purpose, partial = '', 'If a partial load is what you want'
    raise WeightMismatchError(
        f'{_fill_summary(module, fill, prefix)}{purpose} Likely cause: '
        f'{_likely_cause(module, fill, prefix)}. {partial}, set '
        f'{MIN_MATCH_ENV} to the fraction that must match (now '
        f'{min_match:g}; 0 switches this check off).')


def check_resume_fit(model: nn.Module, state_dict: Mapping[str, torch.Tensor],
                     filename: str) -> None:
    """Raise unless ``state_dict`` fills every tensor of ``model`` with the
    same shape (``--resume``).

    MMEngine resumes with ``strict=False``: layers whose shape changed (e.g.
    after editing ``num_classes``) are re-initialised, with a warning, and the
    run goes on as if it continued. ``MMCM_MIN_WEIGHT_MATCH`` does not apply.

    Args:
        model (nn.Module): The model being resumed (not a DDP wrapper).
        state_dict (Mapping[str, Tensor]): The checkpoint's ``state_dict``
            (keys without a ``module.`` prefix).
        filename (str): The checkpoint's path, for the message.

    Raises:
        ResumeMismatchError: a tensor of ``model`` is missing from the
            checkpoint or has another shape there.
    """
    fill = compare_state_dict(model, state_dict)
    if not (fill.missing or fill.reshaped):
        return
    classes = num_classes_change(model, fill)
    if classes is not None and not fill.missing:
        cause = (f'num_classes changed since the checkpoint was written (it '
                 f'has {classes[0]} classes, the model {classes[1]})')
    else:
        cause = ('a setting that sets the size or the layers of these parts '
                 '(num_classes, channels, the architecture) changed since '
                 'the checkpoint was written')
    unfit = []
    if fill.reshaped:
        unfit.append(f'{len(fill.reshaped)} have another shape in the '
                     f'checkpoint ({_shape_examples(fill.reshaped)})')
    if fill.missing:
        unfit.append(f'{len(fill.missing)} are missing from it '
                     f'({_examples(fill.missing)})')
    raise ResumeMismatchError(
        f'Cannot resume from {filename}: of the {len(fill.own)} tensors of '
        f'{type(model).__name__}, {" and ".join(unfit)}; filled per module: '
        f'{_format_per_module(fill_per_module(fill))}. Likely cause: '
        f'{cause}. Resuming continues that run and needs the same model: '
        'MMEngine would re-initialise these layers and go on training. To '
        'continue the run, restore the settings it was trained with (its '
        "config is in the work dir and in the checkpoint's meta['cfg']). To "
        'train with the new settings, start a new run (another work_dir) '
        f'with load_from={filename} and without '
        '--resume: it loads the tensors that fit and initialises the others.')


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
