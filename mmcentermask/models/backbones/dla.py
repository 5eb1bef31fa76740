"""Deep Layer Aggregation backbone (Yu, Wang, Shelhamer, Darrell, "Deep
Layer Aggregation", CVPR 2018), as CenterNet uses it (DLA-34).

Module names follow CenterNet's ``dla.py`` (``base_layer``, ``level0`` ...
``level5``, ``tree1``/``tree2``/``root``/``project``), so that a key table
converting its checkpoints stays short.
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmcv.cnn import build_norm_layer
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptMultiConfig
from mmengine.model import BaseModule
from torch import Tensor, nn


class DLABasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual added before the last ReLU.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        stride (int): Stride of the first convolution.
        norm_cfg (dict): Norm layer config.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 norm_cfg: ConfigType) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = build_norm_layer(norm_cfg, out_channels)[1]
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(
            out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = build_norm_layer(norm_cfg, out_channels)[1]

    def forward(self, x: Tensor, residual: Optional[Tensor] = None) -> Tensor:
        """(B, in, H, W) -> (B, out, H / stride, W / stride); ``residual``
        (the input when None) must have the output's shape."""
        residual = x if residual is None else residual
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class DLARoot(nn.Module):
    """Aggregation node: 1x1 conv over the concatenated children, BN, ReLU.

    Args:
        in_channels (int): Sum of the children's channels.
        out_channels (int): Output channels.
        norm_cfg (dict): Norm layer config.
    """

    def __init__(self, in_channels: int, out_channels: int,
                 norm_cfg: ConfigType) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = build_norm_layer(norm_cfg, out_channels)[1]
        self.relu = nn.ReLU(inplace=True)

    def forward(self, *children: Tensor) -> Tensor:
        """Children (B, c_i, H, W) -> (B, out_channels, H, W)."""
        return self.relu(self.bn(self.conv(torch.cat(children, dim=1))))


class DLATree(nn.Module):
    """A hierarchical aggregation tree of ``depth`` levels of blocks.

    Args:
        depth (int): Levels of the tree (1: two blocks and a root).
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        stride (int): Downsampling of the tree (max pooling of the
            shortcut, stride of the first block).
        norm_cfg (dict): Norm layer config.
        level_root (bool): Also aggregate the (downsampled) input at the
            root.
        root_channels (int): Input channels of the root; 0 for two
            children of ``out_channels``.
    """

    def __init__(self,
                 depth: int,
                 in_channels: int,
                 out_channels: int,
                 stride: int,
                 norm_cfg: ConfigType,
                 level_root: bool = False,
                 root_channels: int = 0) -> None:
        super().__init__()
        if root_channels == 0:
            root_channels = 2 * out_channels
        if level_root:
            root_channels += in_channels
        if depth == 1:
            self.tree1 = DLABasicBlock(in_channels, out_channels, stride,
                                       norm_cfg)
            self.tree2 = DLABasicBlock(out_channels, out_channels, 1,
                                       norm_cfg)
            self.root = DLARoot(root_channels, out_channels, norm_cfg)
        else:
            self.tree1 = DLATree(depth - 1, in_channels, out_channels, stride,
                                 norm_cfg)
            self.tree2 = DLATree(
                depth - 1,
                out_channels,
                out_channels,
                1,
                norm_cfg,
                root_channels=root_channels + out_channels)
        self.depth = depth
        self.level_root = level_root
        self.downsample = (
            nn.MaxPool2d(stride, stride=stride) if stride > 1 else None)
        # Only a depth-1 tree uses its shortcut (in its first block);
        # CenterNet's code also builds an unused one in deeper trees, which
        # its checkpoints carry (level3.project, level4.project).
        self.project = None
        if depth == 1 and in_channels != out_channels:
            self.project = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
                build_norm_layer(norm_cfg, out_channels)[1])

    def forward(self,
                x: Tensor,
                residual: Optional[Tensor] = None,
                children: Optional[List[Tensor]] = None) -> Tensor:
        """(B, in, H, W) -> (B, out, H / stride, W / stride).

        ``residual`` is accepted for the call signature of a block and
        recomputed from ``x``; ``children`` are the aggregated outputs of
        the enclosing tree, passed down to the root.
        """
        children = [] if children is None else children
        bottom = self.downsample(x) if self.downsample is not None else x
        if self.level_root:
            children.append(bottom)
        if self.depth == 1:
            shortcut = (
                self.project(bottom) if self.project is not None else bottom)
            x1 = self.tree1(x, shortcut)
            return self.root(self.tree2(x1), x1, *children)
        x1 = self.tree1(x)
        children.append(x1)
        return self.tree2(x1, children=children)


@MODELS.register_module()
class DLA(BaseModule):
    """Deep Layer Aggregation backbone.

    Six levels at strides 1, 2, 4, 8, 16, 32: two convolutional levels
    (``level0``, ``level1``) and four aggregation trees (``level2`` to
    ``level5``).

    Args:
        arch (str | dict): ``'dla34'`` or a dict with ``depths`` (6 ints:
            convolutions of level0 and level1, tree depths of level2-5) and
            ``channels`` (6 ints).
        out_indices (Sequence[int]): Levels to return. Defaults to all six
            (what :class:`DLAUpNeck` takes).
        norm_cfg (dict): Norm layer config. Defaults to BN.
        norm_eval (bool): Keep BN layers in eval mode in training (frozen
            statistics). Defaults to False.
        init_cfg (dict, optional): Initialisation config, e.g.
            ``dict(type='Pretrained', checkpoint=PATH)`` of converted
            ImageNet weights (optional: the paper trains from scratch).

    Example:
        >>> import torch
        >>> model = DLA('dla34').eval()
        >>> for out in model(torch.rand(1, 3, 64, 64)):
        ...     print(tuple(out.shape))
        (1, 16, 64, 64)
        (1, 32, 32, 32)
        (1, 64, 16, 16)
        (1, 128, 8, 8)
        (1, 256, 4, 4)
        (1, 512, 2, 2)
    """

    arch_settings: Dict[str, Dict[str, Tuple[int, ...]]] = {
        'dla34':
        dict(depths=(1, 1, 1, 2, 2, 1), channels=(16, 32, 64, 128, 256, 512)),
    }

    def __init__(self,
                 arch: Union[str, dict] = 'dla34',
                 out_indices: Sequence[int] = (0, 1, 2, 3, 4, 5),
                 norm_cfg: ConfigType = dict(type='BN', requires_grad=True),
                 norm_eval: bool = False,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if isinstance(arch, str):
            if arch not in self.arch_settings:
                raise KeyError(f'DLA arch={arch!r} is unknown; use one of '
                               f'{sorted(self.arch_settings)} or a dict with '
                               '"depths" and "channels"')
            arch = self.arch_settings[arch]
        depths, channels = tuple(arch['depths']), tuple(arch['channels'])
        if len(depths) != 6 or len(channels) != 6:
            raise ValueError(
                f'DLA needs 6 depths and 6 channels, got depths={depths}, '
                f'channels={channels}')
        if not set(out_indices) <= set(range(6)):
            raise ValueError(
                f'out_indices={tuple(out_indices)} must be in 0..5')
        self.channels = channels
        self.out_indices = tuple(out_indices)
        self.norm_eval = norm_eval
        self.base_layer = nn.Sequential(
            nn.Conv2d(3, channels[0], 7, padding=3, bias=False),
            build_norm_layer(norm_cfg, channels[0])[1], nn.ReLU(inplace=True))
        self.level0 = self._conv_level(channels[0], channels[0], depths[0], 1,
                                       norm_cfg)
        self.level1 = self._conv_level(channels[0], channels[1], depths[1], 2,
                                       norm_cfg)
        for level in range(2, 6):
            setattr(
                self, f'level{level}',
                DLATree(
                    depths[level],
                    channels[level - 1],
                    channels[level],
                    2,
                    norm_cfg,
                    level_root=level > 2))

    @property
    def out_channels(self) -> List[int]:
        """Channels of the returned levels."""
        return [self.channels[i] for i in self.out_indices]

    @staticmethod
    def _conv_level(in_channels: int, out_channels: int, num_convs: int,
                    stride: int, norm_cfg: ConfigType) -> nn.Sequential:
        """``num_convs`` 3x3 conv-BN-ReLU, the first with ``stride``."""
        layers = []
        for i in range(num_convs):
            layers += [
                nn.Conv2d(
                    in_channels if i == 0 else out_channels,
                    out_channels,
                    3,
                    stride if i == 0 else 1,
                    padding=1,
                    bias=False),
                build_norm_layer(norm_cfg, out_channels)[1],
                nn.ReLU(inplace=True)
            ]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """(B, 3, H, W) -> the ``out_indices`` levels, level i of shape
        (B, channels[i], H / 2^i, W / 2^i)."""
        x = self.base_layer(x)
        outs = []
        for level in range(6):
            x = getattr(self, f'level{level}')(x)
            if level in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def train(self, mode: bool = True) -> 'DLA':
        """Training mode, with BN layers kept in eval under ``norm_eval``."""
        super().train(mode)
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self
