"""CenterNet's DLA-34 up-path (DLAUp + IDAUp, "DLASeg"): iterative deep
aggregation of the DLA levels at strides 4-32 into one stride-4 map.

Module names follow CenterNet's ``pose_dla_dcn.py`` (``dla_up.ida_{i}``,
``ida_up``, ``proj_{i}``, ``up_{i}``, ``node_{i}``).
"""
import math
from typing import List, Sequence, Tuple

from mmcv.cnn import build_norm_layer
from mmcv.ops import ModulatedDeformConv2dPack
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptMultiConfig
from mmengine.model import BaseModule
from torch import Tensor, nn


class DeformConvBlock(nn.Module):
    """3x3 conv (DCNv2 or plain, with bias) -> BN -> ReLU.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        use_dcn (bool): Modulated deformable convolution (mmcv's DCNv2, as
            CenterNet) instead of a plain convolution.
        norm_cfg (dict): Norm layer config.
    """

    def __init__(self, in_channels: int, out_channels: int, use_dcn: bool,
                 norm_cfg: ConfigType) -> None:
        super().__init__()
        conv = ModulatedDeformConv2dPack if use_dcn else nn.Conv2d
        self.conv = conv(in_channels, out_channels, 3, padding=1)
        self.actf = nn.Sequential(
            build_norm_layer(norm_cfg, out_channels)[1], nn.ReLU(inplace=True))

    def forward(self, x: Tensor) -> Tensor:
        """(B, in, H, W) -> (B, out, H, W)."""
        return self.actf(self.conv(x))


def bilinear_upsampling_kernel(deconv: nn.ConvTranspose2d) -> None:
    """Fill a depthwise transposed convolution with a bilinear kernel."""
    weight = deconv.weight.data
    factor = math.ceil(weight.size(2) / 2)
    centre = (2 * factor - 1 - factor % 2) / (2. * factor)
    for i in range(weight.size(2)):
        for j in range(weight.size(3)):
            weight[0, 0, i, j] = ((1 - abs(i / factor - centre)) *
                                  (1 - abs(j / factor - centre)))
    weight[1:] = weight[:1]


class IDAUp(nn.Module):
    """Iterative deep aggregation: level i is projected to ``out_channels``,
    upsampled by ``up_factors[i]`` and merged with level i - 1.

    Args:
        out_channels (int): Channels of every merged level.
        in_channels (Sequence[int]): Channels of the levels it merges.
        up_factors (Sequence[int]): Upsampling of each level to the first.
        use_dcn (bool): DCNv2 in the projection and merge blocks.
        norm_cfg (dict): Norm layer config.
    """

    def __init__(self, out_channels: int, in_channels: Sequence[int],
                 up_factors: Sequence[int], use_dcn: bool,
                 norm_cfg: ConfigType) -> None:
        super().__init__()
        for i in range(1, len(in_channels)):
            factor = int(up_factors[i])
            setattr(
                self, f'proj_{i}',
                DeformConvBlock(in_channels[i], out_channels, use_dcn,
                                norm_cfg))
            setattr(
                self, f'up_{i}',
                nn.ConvTranspose2d(
                    out_channels,
                    out_channels,
                    factor * 2,
                    stride=factor,
                    padding=factor // 2,
                    groups=out_channels,
                    bias=False))
            setattr(
                self, f'node_{i}',
                DeformConvBlock(out_channels, out_channels, use_dcn,
                                norm_cfg))

    def forward(self, layers: List[Tensor], start: int, end: int) -> None:
        """Merge ``layers[start + 1:end]`` in place, each into the one
        before it; ``layers[end - 1]`` ends at the resolution of
        ``layers[start]``."""
        for i in range(start + 1, end):
            step = i - start
            upsampled = getattr(self, f'up_{step}')(getattr(
                self, f'proj_{step}')(layers[i]))
            layers[i] = getattr(self, f'node_{step}')(upsampled +
                                                     layers[i - 1])


class DLAUp(nn.Module):
    """Deep aggregation from the deepest level up to the first: returns
    the levels ``[first, ...]`` each refined by all deeper ones.

    Args:
        channels (Sequence[int]): Channels of the levels, shallow to deep.
        scales (Sequence[int]): Their strides relative to the first.
        use_dcn (bool): DCNv2 in the aggregation blocks.
        norm_cfg (dict): Norm layer config.
    """

    def __init__(self, channels: Sequence[int], scales: Sequence[int],
                 use_dcn: bool, norm_cfg: ConfigType) -> None:
        super().__init__()
        channels = list(channels)
        in_channels = list(channels)
        scales = list(scales)
        self.num_levels = len(channels)
        for i in range(len(channels) - 1):
            j = -i - 2
            setattr(
                self, f'ida_{i}',
                IDAUp(channels[j], in_channels[j:],
                      [s // scales[j] for s in scales[j:]], use_dcn,
                      norm_cfg))
            scales[j + 1:] = [scales[j]] * len(scales[j + 1:])
            in_channels[j + 1:] = [channels[j]] * len(in_channels[j + 1:])

    def forward(self, layers: List[Tensor]) -> List[Tensor]:
        """``num_levels`` maps (B, channels[i], H / scales[i], ...) ->
        the same levels, refined; the list given is modified."""
        outs = [layers[-1]]
        for i in range(self.num_levels - 1):
            getattr(self, f'ida_{i}')(layers, len(layers) - i - 2,
                                      len(layers))
            outs.insert(0, layers[-1])
        return outs


@MODELS.register_module()
class DLAUpNeck(BaseModule):
    """CenterNet's DLA up-path: DLAUp over the levels at strides
    ``2^first_level`` ... 32, then IDAUp over its outputs but the deepest
    (strides 4, 8, 16 for DLA-34), to one map at stride ``2^first_level``.

    Args:
        in_channels (Sequence[int]): Channels of all backbone levels,
            stride 1 first (DLA-34: 16, 32, 64, 128, 256, 512).
        first_level (int): log2 of the output stride. Defaults to 2 (4).
        use_dcn (bool): DCNv2 (mmcv ``ModulatedDeformConv2dPack``) in every
            projection and merge block, as CenterNet; False for plain 3x3
            convolutions (CPU tests). Defaults to True.
        norm_cfg (dict): Norm layer config. Defaults to BN.
        init_cfg (dict, optional): Initialisation config.

    Example:
        >>> import torch
        >>> from mmcentermask.models.backbones import DLA
        >>> feats = DLA('dla34').eval()(torch.rand(1, 3, 64, 64))
        >>> neck = DLAUpNeck([16, 32, 64, 128, 256, 512], use_dcn=False)
        >>> [tuple(o.shape) for o in neck.eval()(feats)]
        [(1, 64, 16, 16)]
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 first_level: int = 2,
                 use_dcn: bool = True,
                 norm_cfg: ConfigType = dict(type='BN', requires_grad=True),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if not 0 <= first_level < len(in_channels) - 1:
            raise ValueError(
                f'first_level={first_level} must leave at least 2 of the '
                f'{len(in_channels)} levels in_channels={tuple(in_channels)}')
        self.first_level = first_level
        channels = list(in_channels[first_level:])
        self.dla_up = DLAUp(channels, [2**i for i in range(len(channels))],
                            use_dcn, norm_cfg)
        # Every output of DLAUp but the deepest (CenterNet: strides 4-16).
        num_merged = max(len(channels) - 1, 1)
        self.num_merged = num_merged
        self.ida_up = IDAUp(channels[0], channels[:num_merged],
                            [2**i for i in range(num_merged)], use_dcn,
                            norm_cfg)
        self.out_channels = channels[0]

    def init_weights(self) -> None:
        """Default initialisation, then bilinear kernels in the
        upsampling layers (CenterNet's ``fill_up_weights``)."""
        super().init_weights()
        for module in self.modules():
            if isinstance(module, nn.ConvTranspose2d):
                bilinear_upsampling_kernel(module)

    def forward(self, x: Sequence[Tensor]) -> Tuple[Tensor]:
        """All backbone levels (level i: (B, in_channels[i], H / 2^i,
        W / 2^i)) -> one (B, in_channels[first_level], H / 2^first_level,
        W / 2^first_level) map, as a 1-tuple."""
        layers = self.dla_up(list(x[self.first_level:]))
        merged = [layer.clone() for layer in layers[:self.num_merged]]
        self.ida_up(merged, 0, len(merged))
        return (merged[-1], )
