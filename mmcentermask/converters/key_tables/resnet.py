"""ResNet / ResNeXt key tables: detectron2 (centermask2) and
maskrcnn-benchmark layouts onto mmdet's ``ResNet`` / ``ResNeXt``.

detectron2 names, relative to ``backbone.bottom_up.``:
``stem.conv1.weight`` -> ``conv1.weight``, ``stem.conv1.norm.*`` -> ``bn1.*``,
``res{S}.{j}.conv{k}.weight`` -> ``layer{S-1}.{j}.conv{k}.weight``,
``res{S}.{j}.conv{k}.norm.*`` -> ``layer{S-1}.{j}.bn{k}.*``,
``res{S}.{j}.shortcut.weight`` / ``.shortcut.norm.*`` ->
``layer{S-1}.{j}.downsample.0.weight`` / ``.downsample.1.*``, deformable
``res{S}.{j}.conv2_offset.*`` -> ``layer{S-1}.{j}.conv2.conv_offset.*``.
maskrcnn-benchmark names (relative to ``backbone.body.``) are mmdet's except
``stem.conv1`` / ``stem.bn1`` and the DCN ``conv2.conv`` / ``conv2.offset``.
"""
import re
from typing import Tuple

RESNET_TYPES = ('ResNet', 'ResNetV1d', 'ResNeXt')

_NORM_PARAMS = frozenset(
    ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked'))
# (pattern, template, is_norm); ``{L}`` = mmdet layer = stage - 1
_Rules = Tuple[Tuple['re.Pattern[str]', str, bool], ...]

_CENTERMASK2_RULES: _Rules = tuple(
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


_MASKRCNN_BENCHMARK_RULES: _Rules = tuple(
    (re.compile(pattern), template, is_norm)
    for pattern, template, is_norm in (
        (r'stem\.conv1\.weight', 'conv1.weight', False),
        (r'stem\.bn1\.(?P<p>\w+)', 'bn1.{p}', True),
        (r'layer(?P<L>[1-4])\.(?P<j>\d+)\.conv(?P<k>[13])\.weight',
         'layer{L}.{j}.conv{k}.weight', False),
        (r'layer(?P<L>[1-4])\.(?P<j>\d+)\.conv2\.weight',
         'layer{L}.{j}.conv2.weight', False),
        (r'layer(?P<L>[1-4])\.(?P<j>\d+)\.conv2\.conv\.weight',
         'layer{L}.{j}.conv2.weight', False),
        (r'layer(?P<L>[1-4])\.(?P<j>\d+)\.conv2\.offset\.(?P<p>weight|bias)',
         'layer{L}.{j}.conv2.conv_offset.{p}', False),
        (r'layer(?P<L>[1-4])\.(?P<j>\d+)\.bn(?P<k>[123])\.(?P<p>\w+)',
         'layer{L}.{j}.bn{k}.{p}', True),
        (r'layer(?P<L>[1-4])\.(?P<j>\d+)\.downsample\.0\.weight',
         'layer{L}.{j}.downsample.0.weight', False),
        (r'layer(?P<L>[1-4])\.(?P<j>\d+)\.downsample\.1\.(?P<p>\w+)',
         'layer{L}.{j}.downsample.1.{p}', True),
    ))


def _apply_rules(key: str, rules: _Rules, layout: str) -> str:
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


def centermask2_resnet_key_to_mmdet(key: str) -> str:
    """mmdet ``ResNet`` / ``ResNeXt`` key of a detectron2 ResNet key
    (without ``backbone.bottom_up.``).

    Example:
        >>> centermask2_resnet_key_to_mmdet('res3.0.shortcut.norm.running_var')
        'layer2.0.downsample.1.running_var'

    Raises:
        KeyError: Not a detectron2 ResNet key.
    """
    return _apply_rules(key, _CENTERMASK2_RULES, 'detectron2')


def maskrcnn_benchmark_resnet_key_to_mmdet(key: str) -> str:
    """mmdet ``ResNet`` / ``ResNeXt`` key of a maskrcnn-benchmark ResNet key
    (without ``backbone.body.``): ``stem.conv1`` / ``stem.bn1`` ->
    ``conv1`` / ``bn1``; ``layer*`` names are mmdet's already; DCN
    ``conv2.conv.weight`` / ``conv2.offset.*`` -> ``conv2.weight`` /
    ``conv2.conv_offset.*``.

    Example:
        >>> maskrcnn_benchmark_resnet_key_to_mmdet('stem.bn1.running_var')
        'bn1.running_var'

    Raises:
        KeyError: Not a maskrcnn-benchmark ResNet key.
    """
    return _apply_rules(key, _MASKRCNN_BENCHMARK_RULES, 'maskrcnn-benchmark')
