"""VoVNet (V1) and VoVNetV2 backbones.

* VoVNetV1: Lee et al., "An Energy and GPU-Computation Efficient Backbone
  Network for Real-Time Object Detection", CVPR Workshops 2019,
  https://arxiv.org/abs/1904.09730.
* VoVNetV2: Lee & Park, "CenterMask: Real-Time Anchor-Free Instance
  Segmentation", CVPR 2020, https://arxiv.org/abs/1911.06667 (identity
  mapping and effective Squeeze-Excitation, eSE, added to every OSA module).

The layer structure follows the authors' code (youngwanLEE/centermask2
``centermask/modeling/backbone/vovnet.py``, identical in vovnet-detectron2 and
the maskrcnn-benchmark CenterMask), including what that code really does
rather than what it seems to intend: every OSA module of a VoVNetV2 has an eSE
(the per-stage SE flag is never read there). The variant-table idiom follows
timm ``timm/models/vovnet.py``; ``ese_last_only=True`` reproduces timm's one
structural difference (eSE only in the last block of a stage) so that timm's
``ese_vovnet*`` weights load strictly.

Module names are mmdet-style (no ``/``) but map one to one onto the authors'
checkpoint keys; :mod:`mmcentermask.converters.vovnet` holds that mapping.

Shape shorthand: N = batch size, H, W = input height and width in pixels,
C_k = ``stage_out_channels[k]``. Stage k (k = 2..5) outputs (N, C_k, H / s,
W / s) with stride s = 4, 8, 16, 32 when H and W are multiples of 32 (what
``pad_size_divisor=32`` gives). Other sizes work too: the stride-2 stem convs
round up (``ceil(H / 2)``), each ceil-mode 3x3/s2 max-pool of stages 3-5 rounds
an odd size down (``H // 2``).
"""
from dataclasses import dataclass, fields
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmengine.model import BaseModule, ModuleList, Sequential
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from mmdet.models.layers import ChannelAttention
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig

from mmcentermask.utils.weight_check import guard_weight_loading

#: Output stride of stage2..stage5.
STAGE_STRIDES: Tuple[int, ...] = (4, 8, 16, 32)


@dataclass(frozen=True)
class VoVNetArch:
    """Architecture of one VoVNet variant.

    Args:
        stem_channels (tuple[int]): Output channels of the three stem convs.
        stage_channels (tuple[int]): Channels of the 3x3 layers inside the OSA
            modules of stage2..stage5.
        stage_out_channels (tuple[int]): Output channels (after the 1x1
            aggregation conv) of stage2..stage5.
        layers_per_block (int): Number of 3x3 layers in one OSA module.
        blocks_per_stage (tuple[int]): Number of OSA modules per stage.
        depthwise (bool): Use depthwise-separable 3x3 layers (``-dw``
            variants) in the OSA modules and in stem convs 2 and 3.
        identity (bool): Residual connection on OSA modules 2..N of a stage
            (VoVNetV2).
        ese (bool): Effective Squeeze-Excitation after the aggregation conv
            (VoVNetV2).
    """
    stem_channels: Tuple[int, int, int]
    stage_channels: Tuple[int, int, int, int]
    stage_out_channels: Tuple[int, int, int, int]
    layers_per_block: int
    blocks_per_stage: Tuple[int, int, int, int]
    depthwise: bool = False
    identity: bool = True
    ese: bool = True

    def __post_init__(self) -> None:
        lengths = dict(
            stem_channels=3,
            stage_channels=4,
            stage_out_channels=4,
            blocks_per_stage=4)
        for name, length in lengths.items():
            value = tuple(getattr(self, name))
            if len(value) != length or not all(
                    isinstance(v, int) and v > 0 for v in value):
                raise ValueError(f'VoVNet arch {name} must be {length} '
                                 f'positive ints, got {value}')
            object.__setattr__(self, name, value)
        if not (isinstance(self.layers_per_block, int)
                and self.layers_per_block > 0):
            raise ValueError('VoVNet arch layers_per_block must be a '
                             f'positive int, got {self.layers_per_block}')


#: Variant table. V2 names are centermask2's ``MODEL.VOVNET.CONV_BODY``
#: without the ``-eSE`` suffix (accepted too, see :data:`VOVNET_ALIASES`);
#: V1 follows VoVNet.pytorch ``vovnet27_slim`` and timm ``vovnet39a``,
#: ``vovnet57a`` (no identity mapping, no eSE).
VOVNET_ARCHS: Dict[str, VoVNetArch] = {
    'V-19-slim-dw':
    VoVNetArch(
        stem_channels=(64, 64, 64),
        stage_channels=(64, 80, 96, 112),
        stage_out_channels=(112, 256, 384, 512),
        layers_per_block=3,
        blocks_per_stage=(1, 1, 1, 1),
        depthwise=True),
    'V-19-dw':
    VoVNetArch(
        stem_channels=(64, 64, 64),
        stage_channels=(128, 160, 192, 224),
        stage_out_channels=(256, 512, 768, 1024),
        layers_per_block=3,
        blocks_per_stage=(1, 1, 1, 1),
        depthwise=True),
    'V-19-slim':
    VoVNetArch(
        stem_channels=(64, 64, 128),
        stage_channels=(64, 80, 96, 112),
        stage_out_channels=(112, 256, 384, 512),
        layers_per_block=3,
        blocks_per_stage=(1, 1, 1, 1)),
    'V-19':
    VoVNetArch(
        stem_channels=(64, 64, 128),
        stage_channels=(128, 160, 192, 224),
        stage_out_channels=(256, 512, 768, 1024),
        layers_per_block=3,
        blocks_per_stage=(1, 1, 1, 1)),
    'V-39':
    VoVNetArch(
        stem_channels=(64, 64, 128),
        stage_channels=(128, 160, 192, 224),
        stage_out_channels=(256, 512, 768, 1024),
        layers_per_block=5,
        blocks_per_stage=(1, 1, 2, 2)),
    'V-57':
    VoVNetArch(
        stem_channels=(64, 64, 128),
        stage_channels=(128, 160, 192, 224),
        stage_out_channels=(256, 512, 768, 1024),
        layers_per_block=5,
        blocks_per_stage=(1, 1, 4, 3)),
    'V-99':
    VoVNetArch(
        stem_channels=(64, 64, 128),
        stage_channels=(128, 160, 192, 224),
        stage_out_channels=(256, 512, 768, 1024),
        layers_per_block=5,
        blocks_per_stage=(1, 3, 9, 3)),
    'V1-27-slim':
    VoVNetArch(
        stem_channels=(64, 64, 128),
        stage_channels=(64, 80, 96, 112),
        stage_out_channels=(128, 256, 384, 512),
        layers_per_block=5,
        blocks_per_stage=(1, 1, 1, 1),
        identity=False,
        ese=False),
    'V1-39':
    VoVNetArch(
        stem_channels=(64, 64, 128),
        stage_channels=(128, 160, 192, 224),
        stage_out_channels=(256, 512, 768, 1024),
        layers_per_block=5,
        blocks_per_stage=(1, 1, 2, 2),
        identity=False,
        ese=False),
    'V1-57':
    VoVNetArch(
        stem_channels=(64, 64, 128),
        stage_channels=(128, 160, 192, 224),
        stage_out_channels=(256, 512, 768, 1024),
        layers_per_block=5,
        blocks_per_stage=(1, 1, 4, 3),
        identity=False,
        ese=False),
}

#: centermask2 / vovnet-detectron2 spellings of the V2 names.
VOVNET_ALIASES: Dict[str, str] = {
    f'{name}-eSE': name
    for name in VOVNET_ARCHS if not name.startswith('V1-')
}


def get_vovnet_arch(arch: Union[str, Mapping, VoVNetArch]) -> VoVNetArch:
    """Resolve ``arch`` (a variant name, an alias or a dict of the
    :class:`VoVNetArch` fields) to a :class:`VoVNetArch`.

    Raises:
        KeyError: Unknown name; the message lists the valid names.
        ValueError: A dict with missing, unknown or invalid fields.
    """
    if isinstance(arch, VoVNetArch):
        return arch
    if isinstance(arch, str):
        name = VOVNET_ALIASES.get(arch, arch)
        if name not in VOVNET_ARCHS:
            valid = sorted(VOVNET_ARCHS) + sorted(VOVNET_ALIASES)
            raise KeyError(f'Unknown VoVNet arch {arch!r}; valid names: '
                           f'{", ".join(valid)}')
        return VOVNET_ARCHS[name]
    if isinstance(arch, Mapping):
        names = {f.name for f in fields(VoVNetArch)}
        unknown = sorted(set(arch) - names)
        if unknown:
            raise ValueError(f'Unknown VoVNet arch keys {unknown}; valid '
                             f'keys: {sorted(names)}')
        try:
            return VoVNetArch(**arch)
        except TypeError as err:
            raise ValueError(f'Incomplete VoVNet arch dict: {err}') from None
    raise TypeError('arch must be a str, a dict or a VoVNetArch, got '
                    f'{type(arch).__name__}')


def build_vovnet_norm(norm_cfg: ConfigType, channels: int,
                      layer_name: str) -> nn.Module:
    """Build the norm layer of ``layer_name`` with a readable error when
    GroupNorm cannot split ``channels`` into its groups.

    Raises:
        ValueError: GroupNorm without ``num_groups`` or with a group count
            that does not divide ``channels``.
    """
    if norm_cfg['type'] in ('GN', 'GroupNorm'):
        groups = norm_cfg.get('num_groups')
        if groups is None:
            raise ValueError(
                f'GroupNorm norm_cfg needs num_groups: {norm_cfg}')
        if channels % groups:
            raise ValueError(
                f'GroupNorm(num_groups={groups}) cannot normalise layer '
                f'{layer_name!r}: its {channels} channels are not divisible '
                f'by {groups}')
    return build_norm_layer(norm_cfg, channels)[1]


class ConvNormReLU(BaseModule):
    """Conv (no bias) -> norm -> ReLU, the conv unit of the authors' code.

    A fixed ``norm`` attribute name (instead of mmcv ``ConvModule``'s
    ``bn``/``gn``) keeps the checkpoint keys independent of the norm type, as
    in the authors' ``{name}/norm``.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int): 1 or 3; padding is ``kernel_size // 2``.
        norm_cfg (dict): Norm layer config.
        layer_name (str): Name used in error messages.
        stride (int): Conv stride. Defaults to 1.
        conv_cfg (dict, optional): Conv layer config, e.g. ``dict(type=
            'DCNv2', deform_groups=1)``. Defaults to None (``nn.Conv2d``).
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int,
                 norm_cfg: ConfigType,
                 layer_name: str,
                 stride: int = 1,
                 conv_cfg: OptConfigType = None) -> None:
        super().__init__()
        self.conv = build_conv_layer(
            conv_cfg,
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            bias=False)
        self.norm = build_vovnet_norm(norm_cfg, out_channels, layer_name)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, H, W) -> (N, C_out, H / stride, W / stride)."""
        return self.relu(self.norm(self.conv(x)))


class DWConvNormReLU(BaseModule):
    """Depthwise 3x3 conv -> pointwise 1x1 conv -> norm -> ReLU.

    There is no norm or activation between the two convs (authors'
    ``dw_conv3x3`` unit; timm ``SeparableConvNormAct``).

    Args:
        in_channels (int): Input channels (= depthwise groups).
        out_channels (int): Output channels of the pointwise conv.
        norm_cfg (dict): Norm layer config.
        layer_name (str): Name used in error messages.
        stride (int): Stride of the depthwise conv. Defaults to 1.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 norm_cfg: ConfigType,
                 layer_name: str,
                 stride: int = 1) -> None:
        super().__init__()
        self.dw_conv = nn.Conv2d(
            in_channels,
            in_channels,
            3,
            stride=stride,
            padding=1,
            groups=in_channels,
            bias=False)
        self.pw_conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.norm = build_vovnet_norm(norm_cfg, out_channels, layer_name)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, H, W) -> (N, C_out, H / stride, W / stride)."""
        return self.relu(self.norm(self.pw_conv(self.dw_conv(x))))


class OSABlock(BaseModule):
    """One-Shot Aggregation module.

    ``x`` -> [reduction 1x1 (dw only, when in != stage channels)] -> L
    sequential 3x3 layers -> concat([x, out_1, ..., out_L]) (``x`` un-reduced)
    -> 1x1 aggregation conv -> [eSE] -> [+ x].

    Args:
        in_channels (int): Input channels.
        stage_channels (int): Channels of the 3x3 layers.
        out_channels (int): Output channels of the aggregation conv.
        num_layers (int): Number of 3x3 layers L.
        norm_cfg (dict): Norm layer config.
        name (str): Module path used in error messages.
        identity (bool): Add the input to the output. Defaults to False.
        ese (bool): Apply eSE after the aggregation conv. Defaults to True.
        depthwise (bool): Depthwise-separable 3x3 layers. Defaults to False.
        dcn (dict, optional): Conv config of the 3x3 layers (deformable
            conv). Defaults to None.
        with_cp (bool): Gradient checkpointing of the whole module.
            Defaults to False.
    """

    def __init__(self,
                 in_channels: int,
                 stage_channels: int,
                 out_channels: int,
                 num_layers: int,
                 norm_cfg: ConfigType,
                 name: str,
                 identity: bool = False,
                 ese: bool = True,
                 depthwise: bool = False,
                 dcn: OptConfigType = None,
                 with_cp: bool = False) -> None:
        super().__init__()
        if identity and in_channels != out_channels:
            raise ValueError(f'{name}: identity mapping needs in_channels == '
                             f'out_channels, got {in_channels} and '
                             f'{out_channels}')
        self.identity = identity
        self.with_cp = with_cp
        self.reduction = None
        channels = in_channels
        if depthwise and in_channels != stage_channels:
            self.reduction = ConvNormReLU(in_channels, stage_channels, 1,
                                          norm_cfg, f'{name}.reduction')
            channels = stage_channels
        layers = []
        for i in range(num_layers):
            layer_name = f'{name}.layers.{i}'
            if depthwise:
                layers.append(
                    DWConvNormReLU(channels, stage_channels, norm_cfg,
                                   layer_name))
            else:
                layers.append(
                    ConvNormReLU(
                        channels,
                        stage_channels,
                        3,
                        norm_cfg,
                        layer_name,
                        conv_cfg=dcn))
            channels = stage_channels
        self.layers = ModuleList(layers)
        self.concat = ConvNormReLU(in_channels + num_layers * stage_channels,
                                   out_channels, 1, norm_cfg, f'{name}.concat')
        self.ese = ChannelAttention(out_channels) if ese else None

    def _forward(self, x: Tensor) -> Tensor:
        feats = [x]
        out = x if self.reduction is None else self.reduction(x)
        for layer in self.layers:
            out = layer(out)
            feats.append(out)
        out = self.concat(torch.cat(feats, dim=1))
        if self.ese is not None:
            out = self.ese(out)
        if self.identity:
            out = out + x
        return out

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, H, W) -> (N, out_channels, H, W)."""
        if self.with_cp and torch.is_grad_enabled():
            return cp.checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)


class OSAStage(BaseModule):
    """Optional ceil-mode 3x3/s2 max-pool followed by ``num_blocks`` OSA
    modules; module 1 maps in -> out channels, modules 2..N out -> out.

    Args:
        in_channels (int): Input channels.
        stage_channels (int): Channels of the 3x3 layers.
        out_channels (int): Output channels.
        num_blocks (int): Number of OSA modules.
        num_layers (int): 3x3 layers per OSA module.
        downsample (bool): Start with the max-pool (stages 3-5).
        identity (bool): Identity mapping on modules 2..N.
        ese (bool): Use eSE.
        ese_last_only (bool): eSE only in the last module (timm layout).
        norm_cfg (dict): Norm layer config.
        name (str): Module path used in error messages.
        depthwise (bool): Depthwise-separable 3x3 layers.
        dcn (dict, optional): Conv config of the 3x3 layers.
        with_cp (bool): Gradient checkpointing per OSA module.
    """

    def __init__(self, in_channels: int, stage_channels: int,
                 out_channels: int, num_blocks: int, num_layers: int,
                 downsample: bool, identity: bool, ese: bool,
                 ese_last_only: bool, norm_cfg: ConfigType, name: str,
                 depthwise: bool, dcn: OptConfigType, with_cp: bool) -> None:
        super().__init__()
        self.pool = (
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
            if downsample else None)
        blocks = []
        for b in range(num_blocks):
            last = b == num_blocks - 1
            blocks.append(
                OSABlock(
                    in_channels if b == 0 else out_channels,
                    stage_channels,
                    out_channels,
                    num_layers,
                    norm_cfg,
                    f'{name}.blocks.{b}',
                    identity=identity and b > 0,
                    ese=ese and (last or not ese_last_only),
                    depthwise=depthwise,
                    dcn=dcn,
                    with_cp=with_cp))
        self.blocks = Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, H, W) -> (N, C_out, H // 2, W // 2) with ``downsample``
        (ceil-mode 3x3/s2 max-pool without padding), else (N, C_out, H, W)."""
        if self.pool is not None:
            x = self.pool(x)
        return self.blocks(x)


@MODELS.register_module()
class VoVNet(BaseModule):
    """VoVNet / VoVNetV2 backbone.

    Args:
        arch (str | dict): A name of :data:`VOVNET_ARCHS` (V2:
            ``'V-19-slim-dw'``, ``'V-19-dw'``, ``'V-19-slim'``, ``'V-19'``,
            ``'V-39'``, ``'V-57'``, ``'V-99'``, also with the centermask2
            ``-eSE`` suffix; V1: ``'V1-27-slim'``, ``'V1-39'``,
            ``'V1-57'``) or a dict of the :class:`VoVNetArch` fields.
            Defaults to ``'V-39'``.
        in_channels (int): Input image channels. Defaults to 3.
        identity (bool, optional): Override the arch's identity mapping.
            Defaults to None (use the arch's).
        ese (bool, optional): Override the arch's eSE. Defaults to None.
        ese_last_only (bool): eSE only in the last OSA module of each stage,
            the layout of timm's ``ese_vovnet*`` models. Defaults to False
            (eSE in every module, as the authors' code and checkpoints).
        out_indices (Sequence[int]): Stages to return, 0..3 = stage2..stage5
            (strides 4, 8, 16, 32). Defaults to (1, 2, 3) (CenterMask's
            stage3-5).
        frozen_stages (int): -1: nothing frozen; 0: the stem; k >= 1: the stem
            and stage2..stage(k+1). Frozen parts get ``requires_grad=False``
            and stay in eval mode. Defaults to -1.
        norm_cfg (dict): Norm config of every norm layer. Frozen BN as in the
            authors' FrozenBN: ``dict(type='BN', requires_grad=False)`` with
            ``norm_eval=True``. Defaults to ``dict(type='BN',
            requires_grad=True)`` (eps 1e-5).
        norm_eval (bool): Keep BN layers in eval mode (running statistics
            frozen) in ``train()``. Defaults to False.
        dcn (dict, optional): Deformable conv config for every 3x3 layer of
            the OSA modules of the stages chosen by ``stage_with_dcn`` (not the
            stem, not 1x1 convs), e.g. ``dict(type='DCNv2',
            deform_groups=1)`` as in the authors' DCN models. Not supported
            with depthwise variants. Defaults to None.
        stage_with_dcn (Sequence[bool]): Per stage2..stage5, whether to use
            ``dcn``. The authors' DCN configs use (False, True, True, True).
            Defaults to (False, False, False, False).
        with_cp (bool): Gradient checkpointing per OSA module (saves memory,
            costs a second forward). Defaults to False.
        init_cfg (dict or list[dict], optional): Initialization config.
            Defaults to Kaiming for convs and constant 1 / 0 for norms; use
            ``dict(type='Pretrained', checkpoint=PATH)`` with a file written
            by ``tools/model_converters/vovnet2mmdet.py``.

    Attributes:
        out_channels (list[int]): Channels of the returned maps.
        out_strides (list[int]): Strides of the returned maps.

    Example:
        >>> import torch
        >>> from mmcentermask.models import VoVNet
        >>> model = VoVNet(arch='V-19-slim-dw', out_indices=(0, 1, 2, 3))
        >>> outs = model.eval()(torch.rand(1, 3, 64, 96))
        >>> [tuple(o.shape) for o in outs]
        [(1, 112, 16, 24), (1, 256, 8, 12), (1, 384, 4, 6), (1, 512, 2, 3)]
    """

    def __init__(self,
                 arch: Union[str, dict] = 'V-39',
                 in_channels: int = 3,
                 identity: Optional[bool] = None,
                 ese: Optional[bool] = None,
                 ese_last_only: bool = False,
                 out_indices: Sequence[int] = (1, 2, 3),
                 frozen_stages: int = -1,
                 norm_cfg: ConfigType = dict(type='BN', requires_grad=True),
                 norm_eval: bool = False,
                 dcn: OptConfigType = None,
                 stage_with_dcn: Sequence[bool] = (False, False, False, False),
                 with_cp: bool = False,
                 init_cfg: OptMultiConfig = None) -> None:
        if init_cfg is None:
            init_cfg = [
                dict(type='Kaiming', layer='Conv2d'),
                dict(
                    type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])
            ]
        super().__init__(init_cfg=init_cfg)
        self.arch = get_vovnet_arch(arch)
        self.out_indices = self._check_out_indices(out_indices)
        if frozen_stages not in range(-1, 5):
            raise ValueError(
                f'frozen_stages must be in -1..4, got {frozen_stages}')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        stage_dcn = self._stage_dcn(dcn, stage_with_dcn)

        spec = self.arch
        use_identity = spec.identity if identity is None else identity
        use_ese = spec.ese if ese is None else ese
        stem_ch = spec.stem_channels
        self.stem = Sequential(
            ConvNormReLU(in_channels, stem_ch[0], 3, norm_cfg, 'stem.0', 2),
            self._stem_unit(stem_ch[0], stem_ch[1], 1, norm_cfg, 'stem.1'),
            self._stem_unit(stem_ch[1], stem_ch[2], 2, norm_cfg, 'stem.2'))

        self.stage_names: List[str] = []
        channels = stem_ch[2]
        for i in range(4):
            name = f'stage{i + 2}'
            stage = OSAStage(
                channels,
                spec.stage_channels[i],
                spec.stage_out_channels[i],
                spec.blocks_per_stage[i],
                spec.layers_per_block,
                downsample=i > 0,
                identity=use_identity,
                ese=use_ese,
                ese_last_only=ese_last_only,
                norm_cfg=norm_cfg,
                name=name,
                depthwise=spec.depthwise,
                dcn=stage_dcn[i],
                with_cp=with_cp)
            self.add_module(name, stage)
            self.stage_names.append(name)
            channels = spec.stage_out_channels[i]

        self.out_channels = [
            spec.stage_out_channels[i] for i in self.out_indices
        ]
        self.out_strides = [STAGE_STRIDES[i] for i in self.out_indices]
        self._freeze_stages()
        guard_weight_loading(self)  # unconverted or foreign weights are an error

    @staticmethod
    def _check_out_indices(out_indices: Sequence[int]) -> Tuple[int, ...]:
        indices = tuple(out_indices)
        if (not indices or len(set(indices)) != len(indices)
                or any(i not in range(4) for i in indices)
                or list(indices) != sorted(indices)):
            raise ValueError('out_indices must be distinct, increasing '
                             f'indices in 0..3 (stage2..stage5), got '
                             f'{out_indices}')
        return indices

    def _stage_dcn(self, dcn: OptConfigType,
                   stage_with_dcn: Sequence[bool]) -> List[OptConfigType]:
        """Per-stage conv config of the OSA 3x3 layers."""
        stage_with_dcn = tuple(stage_with_dcn)
        if len(stage_with_dcn) != 4:
            raise ValueError('stage_with_dcn needs 4 flags (stage2..stage5), '
                             f'got {stage_with_dcn}')
        if dcn is None:
            if any(stage_with_dcn):
                raise ValueError(
                    f'stage_with_dcn={stage_with_dcn} selects stages but '
                    'dcn is None')
            return [None] * 4
        if not any(stage_with_dcn):
            raise ValueError('dcn is set but stage_with_dcn selects no stage')
        if self.arch.depthwise:
            raise ValueError('dcn is not supported with depthwise VoVNet '
                             'variants (the authors use the depthwise unit '
                             'instead)')
        conv_cfg = dict(dcn)
        conv_cfg.pop('fallback_on_stride', None)
        return [conv_cfg if flag else None for flag in stage_with_dcn]

    def _stem_unit(self, in_channels: int, out_channels: int, stride: int,
                   norm_cfg: ConfigType, name: str) -> BaseModule:
        """Stem convs 2 and 3: depthwise-separable in ``-dw`` variants."""
        if self.arch.depthwise:
            return DWConvNormReLU(in_channels, out_channels, norm_cfg, name,
                                  stride)
        return ConvNormReLU(in_channels, out_channels, 3, norm_cfg, name,
                            stride)

    def _freeze_stages(self) -> None:
        """Stop gradients and statistics updates in the frozen parts."""
        if self.frozen_stages < 0:
            return
        frozen = [self.stem] + [
            getattr(self, name)
            for name in self.stage_names[:self.frozen_stages]
        ]
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """Args:
            x (Tensor): Images, (N, in_channels, H, W); H, W need not be
                multiples of 32 (ceil-mode pooling).

        Returns:
            tuple[Tensor]: One map per ``out_indices`` entry; stage k has
            shape (N, C_k, H / s_k, W / s_k) with s_k = 4, 8, 16, 32 for H, W
            multiples of 32 (see the module docstring for other sizes).
        """
        x = self.stem(x)
        outs = []
        for i, name in enumerate(self.stage_names):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def train(self, mode: bool = True) -> 'VoVNet':
        """Set train mode, keeping frozen stages and (with ``norm_eval``) all
        BN layers in eval mode."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self
