"""Hand-written generators of the authors' checkpoint layouts, written from
the reference spec (``centermask_reference_spec.md`` §1, §2, §9) without
using the converters, for the converter tests.

Each generator returns an ``OrderedDict`` key -> shape in the source layout;
:func:`materialise` turns it into tensors whose values identify the key.
Reference ``nn.Module`` implementations of detectron2's ResNet and of the
tonylins MobileNetV2 (with the authors' module names) give the layout of
those backbones and a forward pass to compare with mmdet's backbones.
"""
from collections import OrderedDict
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

Shape = Tuple[int, ...]
Layout = 'OrderedDict[str, Shape]'

FROZEN_BN = ('weight', 'bias', 'running_mean', 'running_var')

# spec §1.2: stem ch, stage conv ch, stage out ch, layers per block, blocks,
# depthwise
VOVNET_SPECS = {
    'V-19-slim-dw': ((64, 64, 64), (64, 80, 96, 112), (112, 256, 384, 512), 3,
                     (1, 1, 1, 1), True),
    'V-19-slim': ((64, 64, 128), (64, 80, 96, 112), (112, 256, 384, 512), 3,
                  (1, 1, 1, 1), False),
    'V-19': ((64, 64, 128), (128, 160, 192, 224), (256, 512, 768, 1024), 3,
             (1, 1, 1, 1), False),
    'V-39': ((64, 64, 128), (128, 160, 192, 224), (256, 512, 768, 1024), 5,
             (1, 1, 2, 2), False),
    'V-57': ((64, 64, 128), (128, 160, 192, 224), (256, 512, 768, 1024), 5,
             (1, 1, 4, 3), False),
    'V-99': ((64, 64, 128), (128, 160, 192, 224), (256, 512, 768, 1024), 5,
             (1, 3, 9, 3), False),
}


def _norm(layout, prefix: str, channels: int) -> None:
    for param in FROZEN_BN:
        layout[f'{prefix}.{param}'] = (channels, )


def c2_vovnet_layout(arch: str, dcn: bool = False) -> Layout:
    """VoVNetV2 keys (spec §9.1), without ``backbone.bottom_up.``. ``dcn``:
    DCNv2 in every 3x3 layer of stages 3-5 (C2 ``conv_offset`` unit)."""
    stem, stage_ch, out_ch, num_layers, blocks, dw = VOVNET_SPECS[arch]
    layout = OrderedDict()
    ins = (3, stem[0], stem[1])
    for k in (1, 2, 3):
        name = f'stem.stem_{k}'
        if dw and k > 1:
            layout[f'{name}/dw_conv3x3.weight'] = (stem[k - 1], 1, 3, 3)
            layout[f'{name}/pw_conv1x1.weight'] = (stem[k - 1], ins[k - 1], 1,
                                                   1)
            _norm(layout, f'{name}/pw_norm', stem[k - 1])
        else:
            layout[f'{name}/conv.weight'] = (stem[k - 1], ins[k - 1], 3, 3)
            _norm(layout, f'{name}/norm', stem[k - 1])
    in_ch = stem[2]
    for s, stage in enumerate((2, 3, 4, 5)):
        for b in range(1, blocks[s] + 1):
            block = f'stage{stage}.OSA{stage}_{b}'
            block_in = in_ch if b == 1 else out_ch[s]
            layer_in = block_in
            if dw and block_in != stage_ch[s]:
                red = f'{block}.conv_reduction.OSA{stage}_{b}_reduction_0'
                layout[f'{red}/conv.weight'] = (stage_ch[s], block_in, 1, 1)
                _norm(layout, f'{red}/norm', stage_ch[s])
                layer_in = stage_ch[s]
            for i in range(num_layers):
                unit = f'{block}.layers.{i}.OSA{stage}_{b}_{i}'
                cin = layer_in if i == 0 else stage_ch[s]
                if dw:
                    layout[f'{unit}/dw_conv3x3.weight'] = (stage_ch[s], 1, 3,
                                                           3)
                    layout[f'{unit}/pw_conv1x1.weight'] = (stage_ch[s], cin, 1,
                                                           1)
                    _norm(layout, f'{unit}/pw_norm', stage_ch[s])
                elif dcn and stage > 2:
                    layout[f'{unit}/conv_offset.weight'] = (27, cin, 3, 3)
                    layout[f'{unit}/conv_offset.bias'] = (27, )
                    layout[f'{unit}/conv.weight'] = (stage_ch[s], cin, 3, 3)
                    _norm(layout, f'{unit}/norm', stage_ch[s])
                else:
                    layout[f'{unit}/conv.weight'] = (stage_ch[s], cin, 3, 3)
                    _norm(layout, f'{unit}/norm', stage_ch[s])
            cat = f'{block}.concat.OSA{stage}_{b}_concat'
            layout[f'{cat}/conv.weight'] = (out_ch[s], block_in +
                                            num_layers * stage_ch[s], 1, 1)
            _norm(layout, f'{cat}/norm', out_ch[s])
            layout[f'{block}.ese.fc.weight'] = (out_ch[s], out_ch[s], 1, 1)
            layout[f'{block}.ese.fc.bias'] = (out_ch[s], )
        in_ch = out_ch[s]
    return layout


def vovnet_out_channels(arch: str) -> List[int]:
    return list(VOVNET_SPECS[arch][2][1:])


def c2_fpn_layout(in_channels: Sequence[int], out: int) -> Layout:
    """detectron2 FPN over C3-C5 with P6/P7 (spec §2.1, §9.1), with the
    ``backbone.`` prefix."""
    layout = OrderedDict()
    for level, cin in zip((3, 4, 5), in_channels):
        layout[f'backbone.fpn_lateral{level}.weight'] = (out, cin, 1, 1)
        layout[f'backbone.fpn_lateral{level}.bias'] = (out, )
        layout[f'backbone.fpn_output{level}.weight'] = (out, out, 3, 3)
        layout[f'backbone.fpn_output{level}.bias'] = (out, )
    for p in ('p6', 'p7'):
        layout[f'backbone.top_block.{p}.weight'] = (out, out, 3, 3)
        layout[f'backbone.top_block.{p}.bias'] = (out, )
    return layout


def c2_fcos_layout(channels: int,
                   num_convs: int,
                   num_classes: int = 80) -> Layout:
    """centermask2 FCOS head (spec §3.1, §9.1)."""
    prefix = 'proposal_generator.fcos_head.'
    layout = OrderedDict()
    for tower in ('cls_tower', 'bbox_tower'):
        for i in range(num_convs):
            layout[f'{prefix}{tower}.{3 * i}.weight'] = (channels, channels, 3,
                                                         3)
            layout[f'{prefix}{tower}.{3 * i}.bias'] = (channels, )
            layout[f'{prefix}{tower}.{3 * i + 1}.weight'] = (channels, )
            layout[f'{prefix}{tower}.{3 * i + 1}.bias'] = (channels, )
    for name, rows in (('cls_logits', num_classes), ('bbox_pred', 4),
                       ('ctrness', 1)):
        layout[f'{prefix}{name}.weight'] = (rows, channels, 3, 3)
        layout[f'{prefix}{name}.bias'] = (rows, )
    for level in range(5):
        layout[f'{prefix}scales.{level}.scale'] = (1, )
    return layout


def c2_mask_branch_layout(channels: int,
                          num_convs: int,
                          num_classes: int = 80) -> Layout:
    """SAG-Mask and MaskIoU heads (spec §5.1, §6.1, §9.1)."""
    layout = OrderedDict()
    mask, iou = 'roi_heads.mask_head.', 'roi_heads.maskiou_head.'
    for n in range(1, num_convs + 1):
        layout[f'{mask}mask_fcn{n}.weight'] = (channels, channels, 3, 3)
        layout[f'{mask}mask_fcn{n}.bias'] = (channels, )
    layout[f'{mask}spatialAtt.conv.weight'] = (1, 2, 3, 3)
    layout[f'{mask}deconv.weight'] = (channels, channels, 2, 2)
    layout[f'{mask}deconv.bias'] = (channels, )
    layout[f'{mask}predictor.weight'] = (num_classes, channels, 1, 1)
    layout[f'{mask}predictor.bias'] = (num_classes, )
    for n in range(1, num_convs + 1):
        cin = channels + 1 if n == 1 else channels
        layout[f'{iou}maskiou_fcn{n}.weight'] = (channels, cin, 3, 3)
        layout[f'{iou}maskiou_fcn{n}.bias'] = (channels, )
    layout[f'{iou}maskiou_fc1.weight'] = (1024, channels * 49)
    layout[f'{iou}maskiou_fc1.bias'] = (1024, )
    layout[f'{iou}maskiou_fc2.weight'] = (1024, 1024)
    layout[f'{iou}maskiou_fc2.bias'] = (1024, )
    layout[f'{iou}maskiou.weight'] = (num_classes, 1024)
    layout[f'{iou}maskiou.bias'] = (num_classes, )
    return layout


def c2_detector_layout(backbone: Layout, in_channels: Sequence[int],
                       channels: int, num_convs: int) -> Layout:
    """Whole centermask2 detector: ``backbone.bottom_up.`` + FPN + heads."""
    layout = OrderedDict(
        ('backbone.bottom_up.' + k, v) for k, v in backbone.items())
    layout.update(c2_fpn_layout(in_channels, channels))
    layout.update(c2_fcos_layout(channels, num_convs))
    layout.update(c2_mask_branch_layout(channels, num_convs))
    return layout


def materialise(layout: Layout) -> 'OrderedDict[str, torch.Tensor]':
    """Tensors of the layout; tensor ``i`` is filled with ``i + 0.5`` (so a
    converted tensor tells which source key it came from)."""
    return OrderedDict((key, torch.full(shape, i + 0.5))
                       for i, (key, shape) in enumerate(layout.items()))


def layout_of(module: nn.Module) -> Layout:
    return OrderedDict(
        (k, tuple(v.shape)) for k, v in module.state_dict().items())


# --------------------------------------------------------------------------
# maskrcnn-benchmark layouts (spec §9.2): renamed from the C2 layouts
# --------------------------------------------------------------------------


def mb_vovnet_layout(arch: str, dcn: bool = False) -> Layout:
    """MB VoVNet: C2 names; DCN units ``/conv.offset.*``, ``/conv.conv``."""
    layout = OrderedDict()
    dcn_units = {
        k.rsplit('/', 1)[0]
        for k in c2_vovnet_layout(arch, dcn) if k.endswith('/conv_offset.bias')
    }
    for key, shape in c2_vovnet_layout(arch, dcn).items():
        unit, _, rest = key.rpartition('/')
        if unit in dcn_units and rest.startswith('conv_offset.'):
            key = f'{unit}/conv.offset.{rest.split(".")[1]}'
        elif unit in dcn_units and rest == 'conv.weight':
            key = f'{unit}/conv.conv.weight'
        layout[key] = shape
    return layout


def mb_detector_layout(backbone: Layout,
                       in_channels: Sequence[int],
                       channels: int,
                       num_convs: int,
                       with_maskiou: bool = True) -> Layout:
    """Whole MB detector (``module.`` DDP prefix, 81-row predictors)."""
    layout = OrderedDict(
        ('module.backbone.body.' + k, v) for k, v in backbone.items())
    for (level, cin) in zip((2, 3, 4), in_channels):
        for kind, shape in (('inner', (channels, cin, 1, 1)),
                            ('layer', (channels, channels, 3, 3))):
            layout[f'module.backbone.fpn.fpn_{kind}{level}.weight'] = shape
            layout[f'module.backbone.fpn.fpn_{kind}{level}.bias'] = (
                channels, )
    for p in ('p6', 'p7'):
        layout[f'module.backbone.fpn.top_blocks.{p}.weight'] = (channels,
                                                                channels, 3, 3)
        layout[f'module.backbone.fpn.top_blocks.{p}.bias'] = (channels, )
    for key, shape in c2_fcos_layout(channels, num_convs).items():
        name = key[len('proposal_generator.fcos_head.'):]
        layout['module.rpn.head.' +
               name.replace('ctrness', 'centerness')] = shape
    mask = 'module.roi_heads.mask.'
    for n in range(1, num_convs + 1):
        layout[f'{mask}feature_extractor.mask_fcn{n}.weight'] = (channels,
                                                                 channels, 3,
                                                                 3)
        layout[f'{mask}feature_extractor.mask_fcn{n}.bias'] = (channels, )
    layout[f'{mask}feature_extractor.spatialAtt.conv.weight'] = (1, 2, 3, 3)
    layout[f'{mask}predictor.conv5_mask.weight'] = (channels, channels, 2, 2)
    layout[f'{mask}predictor.conv5_mask.bias'] = (channels, )
    layout[f'{mask}predictor.mask_fcn_logits.weight'] = (81, channels, 1, 1)
    layout[f'{mask}predictor.mask_fcn_logits.bias'] = (81, )
    if with_maskiou:
        iou = 'module.roi_heads.maskiou.'
        for n in range(1, num_convs + 1):
            cin = channels + 1 if n == 1 else channels
            layout[f'{iou}feature_extractor.maskiou_fcn{n}.weight'] = (
                channels, cin, 3, 3)
            layout[f'{iou}feature_extractor.maskiou_fcn{n}.bias'] = (
                channels, )
        layout[f'{iou}feature_extractor.maskiou_fc1.weight'] = (1024,
                                                                channels * 49)
        layout[f'{iou}feature_extractor.maskiou_fc1.bias'] = (1024, )
        layout[f'{iou}feature_extractor.maskiou_fc2.weight'] = (1024, 1024)
        layout[f'{iou}feature_extractor.maskiou_fc2.bias'] = (1024, )
        layout[f'{iou}predictor.maskiou.weight'] = (81, 1024)
        layout[f'{iou}predictor.maskiou.bias'] = (81, )
    return layout


def mb_resnet_layout(c2_layout: Layout) -> Layout:
    """maskrcnn-benchmark ResNet names from detectron2's: ``stem.bn1``,
    ``layer{S-1}``, ``bn{k}``, ``downsample.{0,1}``."""
    layout = OrderedDict()
    for key, shape in c2_layout.items():
        parts = key.split('.')
        if parts[0] == 'stem':
            key = 'stem.bn1.' + parts[-1] if parts[2] == 'norm' else key
        else:
            stage, block, unit = int(parts[0][3:]), parts[1], parts[2]
            head = f'layer{stage - 1}.{block}'
            if unit == 'shortcut':
                key = (f'{head}.downsample.1.{parts[-1]}' if parts[3] == 'norm'
                       else f'{head}.downsample.0.weight')
            elif parts[3] == 'norm':
                key = f'{head}.bn{unit[-1]}.{parts[-1]}'
            else:
                key = f'{head}.{unit}.weight'
        layout[key] = shape
    return layout


# --------------------------------------------------------------------------
# reference modules with the authors' names
# --------------------------------------------------------------------------


class FrozenBN(nn.Module):
    """detectron2 FrozenBatchNorm2d (eps 1e-5)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        for name, value in (('weight', 1.), ('bias', 0.), ('running_mean', 0.),
                            ('running_var', 1.)):
            self.register_buffer(name, torch.full((channels, ), value))

    def forward(self, x):
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        bias = self.bias - self.running_mean * scale
        return x * scale[:, None, None] + bias[:, None, None]


class D2Conv(nn.Conv2d):
    """detectron2 ``Conv2d`` with a ``norm`` child."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, bias=False, **kwargs)
        self.norm = FrozenBN(self.out_channels)

    def forward(self, x):
        return self.norm(super().forward(x))


class D2Bottleneck(nn.Module):

    def __init__(self, cin, bottleneck, cout, stride, groups,
                 stride_in_1x1) -> None:
        super().__init__()
        self.shortcut = D2Conv(cin, cout, 1, stride=stride) \
            if cin != cout else None
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = D2Conv(cin, bottleneck, 1, stride=s1)
        self.conv2 = D2Conv(
            bottleneck, bottleneck, 3, stride=s3, padding=1, groups=groups)
        self.conv3 = D2Conv(bottleneck, cout, 1)

    def forward(self, x):
        out = F.relu(self.conv1(x))
        out = F.relu(self.conv2(out))
        out = self.conv3(out)
        short = self.shortcut(x) if self.shortcut is not None else x
        return F.relu(out + short)


class D2ResNet(nn.Module):
    """detectron2 ResNet / ResNeXt (``stem.conv1``, ``res2..res5``), FrozenBN,
    returning res3-res5."""
    DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}

    def __init__(self,
                 depth: int,
                 groups: int = 1,
                 width_per_group: int = 64,
                 stride_in_1x1: bool = True) -> None:
        super().__init__()
        self.stem = nn.Module()
        self.stem.conv1 = D2Conv(3, 64, 7, stride=2, padding=3)
        cin, bottleneck, cout = 64, groups * width_per_group, 256
        for s, num in enumerate(self.DEPTHS[depth]):
            blocks = []
            for j in range(num):
                blocks.append(
                    D2Bottleneck(cin, bottleneck, cout, 2 if
                                 (j == 0 and s > 0) else 1, groups,
                                 stride_in_1x1))
                cin = cout
            setattr(self, f'res{s + 2}', nn.Sequential(*blocks))
            bottleneck, cout = bottleneck * 2, cout * 2

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.stem.conv1(x)), 3, 2, 1)
        outs = []
        for s in range(2, 6):
            x = getattr(self, f'res{s}')(x)
            if s > 2:
                outs.append(x)
        return outs


def _conv_bn(cin, cout, kernel, stride, groups=1) -> List[nn.Module]:
    return [
        nn.Conv2d(
            cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        FrozenBN(cout)
    ]


class InvertedResidual(nn.Module):
    """tonylins MobileNetV2 block (``conv`` Sequential)."""

    def __init__(self, cin, cout, stride, expand) -> None:
        super().__init__()
        hidden = int(round(cin * expand))
        self.use_res = stride == 1 and cin == cout
        layers = []
        if expand != 1:
            layers += _conv_bn(cin, hidden, 1, 1) + [nn.ReLU6()]
        layers += _conv_bn(hidden, hidden, 3, stride, hidden) + [nn.ReLU6()]
        layers += _conv_bn(hidden, cout, 1, 1)
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class TonylinsMobileNetV2(nn.Module):
    """centermask2 / maskrcnn-benchmark MobileNetV2 (``features.{k}``, no
    final 1x1 conv), returning the outputs of features 6, 13, 17."""
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self) -> None:
        super().__init__()
        features = [nn.Sequential(*_conv_bn(3, 32, 3, 2), nn.ReLU6())]
        cin = 32
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                features.append(
                    InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        self.features = nn.Sequential(*features)

    def forward(self, x):
        outs = []
        for k, feature in enumerate(self.features):
            x = feature(x)
            if k in (6, 13, 17):
                outs.append(x)
        return outs


def randomise_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Deterministic non-trivial weights and FrozenBN statistics."""
    gen = torch.Generator().manual_seed(seed)
    for name, tensor in module.state_dict().items():
        if name.endswith('running_var'):
            tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
        elif name.endswith('running_mean') or name.endswith('.bias'):
            tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
        elif tensor.dim() == 1:
            tensor.copy_(torch.rand(tensor.shape, generator=gen) * 0.5 + 0.5)
        else:
            fan_in = tensor[0].numel()
            tensor.copy_(
                torch.randn(tensor.shape, generator=gen) * (1 / fan_in)**0.5)
    return module
