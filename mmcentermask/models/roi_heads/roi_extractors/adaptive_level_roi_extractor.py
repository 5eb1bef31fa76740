"""RoI extractor with CenterMask's adaptive ("ratio") FPN level assignment.

Shape shorthand: ``k`` = number of RoIs, ``C`` = feature channels,
``S`` = RoI output size (14 for CenterMask), ``B`` = batch size.
"""
import math
import sys
from typing import List, Optional, Sequence, Tuple

import torch
from mmcv import ops
from mmdet.models.roi_heads.roi_extractors import BaseRoIExtractor
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptMultiConfig
from torch import Tensor, nn

# detectron2 adds machine epsilon inside the logarithm; in float32 it is
# numerically inert but is kept so the formula reads as in centermask2.
_EPS = sys.float_info.epsilon


@MODELS.register_module()
class AdaptiveLevelRoIExtractor(BaseRoIExtractor):
    """Pool RoIs from the FPN level chosen by box size relative to the image.

    ``level_rule='ratio'`` is Eq. 2 of `CenterMask
    <https://arxiv.org/abs/1911.06667>`_ (centermask2
    ``assign_boxes_to_levels_by_ratio``)::

        k = ceil(k_max - log2(A_img / A_box)),  clamped to [k_min, k_max]

    where ``k_min`` / ``k_max`` are the FPN levels of the first / last entry
    of ``featmap_strides`` (P3 / P5 for ``[8, 16, 32]``), ``A_box`` the RoI
    area and ``A_img`` the area of the RoI's own image. With P3-P5 a RoI goes
    to P5 iff ``A_box > A_img / 2``, to P4 iff ``A_img / 4 < A_box <= A_img /
    2`` and to P3 otherwise. Zero-area RoIs (and degenerate boxes, whose
    negative sides are clamped to 0) go to the lowest level.

    ``level_rule='area'`` is Eq. 1 of `FPN <https://arxiv.org/abs/1612.03144>`_
    as implemented by detectron2 (centermask2's default ``"area"``
    criterion)::

        k = floor(canonical_level + log2(sqrt(A_box) / canonical_box_size)),
        clamped to [k_min, k_max]

    ``A_img`` is ``h * w`` of each image's unpadded ``img_shape`` taken from
    ``batch_img_metas``. When no metas are given (e.g. inside mmdet's own
    RoI heads, which call ``extractor(feats, rois)``), the padded batch size
    ``feats[0].shape[-2:] * featmap_strides[0]`` is used for every image,
    which differs from centermask2 by the (at most ``size_divisor - 1`` px)
    padding.

    RoI features of levels that receive no RoI are still added (times zero)
    to the output so every level stays in the autograd graph, as
    :class:`mmdet.models.SingleRoIExtractor` does for DDP.

    Degenerate boxes: aligned RoIAlign (mmcv, detectron2 and ONNX Runtime
    alike) takes no sample in a bin of an exactly empty box and returns
    zeros, but samples the box's line when it is a hair wide. A regression
    of exactly 0 (a ReLU) in one runtime and of 1e-4 px in another would
    give one detection zero features and the other real ones. So a box
    whose width or height is below ``min_roi_size`` pixels is pooled as
    ``min_roi_size`` wide (or high), from its x1 (y1): both runtimes then
    sample the line the box lies on. Boxes at least ``min_roi_size`` wide
    and high are pooled unchanged (bit for bit); the detections themselves
    are never changed. ``min_roi_size=0`` restores the authors' zeros.

    Args:
        roi_layer (:obj:`ConfigDict` or dict): RoI layer config: an mmcv
            op, e.g. ``dict(type='RoIAlign', output_size=14,
            sampling_ratio=0, aligned=True)`` (detectron2's
            ``ROIAlignV2``), or a layer registered in ``MODELS`` such as
            :class:`SparseRoIAlign` (the same op, multi-threaded on the
            CPU; the CenterMask configs' choice).
        out_channels (int): Channels of the input feature maps.
        featmap_strides (list[int]): Strides of the pooled levels; powers of
            two of consecutive levels, e.g. ``[8, 16, 32]`` for P3-P5.
        level_rule (str): ``'ratio'`` (CenterMask Eq. 2) or ``'area'``
            (FPN Eq. 1). Defaults to ``'ratio'``.
        canonical_box_size (float): ``'area'`` rule only: side in pixels of a
            box that maps to ``canonical_level``. Defaults to 224.
        canonical_level (int): ``'area'`` rule only. Defaults to 4.
        min_roi_size (float): Smallest width and height in pixels of a
            pooled box (see above); 0 pools empty boxes as the authors do
            (zeros). Defaults to 1e-3.
        init_cfg (:obj:`ConfigDict` or dict or list, optional):
            Initialization config dict. Defaults to None.
    """

    level_rules = ('ratio', 'area')

    def __init__(self,
                 roi_layer: ConfigType,
                 out_channels: int,
                 featmap_strides: List[int],
                 level_rule: str = 'ratio',
                 canonical_box_size: float = 224.,
                 canonical_level: int = 4,
                 min_roi_size: float = 1e-3,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(
            roi_layer=roi_layer,
            out_channels=out_channels,
            featmap_strides=featmap_strides,
            init_cfg=init_cfg)
        if level_rule not in self.level_rules:
            raise ValueError(f'level_rule must be one of {self.level_rules}, '
                             f'got {level_rule!r}')
        if not min_roi_size >= 0:
            raise ValueError('min_roi_size must be >= 0 (pixels), got '
                             f'{min_roi_size!r}')
        self.min_level, self.max_level = self._pyramid_levels(featmap_strides)
        self.level_rule = level_rule
        self.canonical_box_size = canonical_box_size
        self.canonical_level = canonical_level
        self.min_roi_size = float(min_roi_size)

    def build_roi_layers(self, layer_cfg: ConfigType,
                         featmap_strides: List[int]) -> nn.ModuleList:
        """One RoI layer per stride: an mmcv op (as mmdet builds them) or
        a layer registered in ``MODELS`` (e.g. ``'SparseRoIAlign'``)."""
        layer_type = layer_cfg['type']
        if not isinstance(layer_type, str) or hasattr(ops, layer_type):
            return super().build_roi_layers(layer_cfg, featmap_strides)
        if layer_type not in MODELS:
            raise KeyError(
                f'roi_layer type {layer_type!r} is neither an mmcv op nor a '
                "registered layer; use e.g. 'RoIAlign' or 'SparseRoIAlign'")
        return nn.ModuleList([
            MODELS.build(dict(layer_cfg, spatial_scale=1 / stride))
            for stride in featmap_strides
        ])

    @staticmethod
    def _pyramid_levels(featmap_strides: Sequence[int]) -> Tuple[int, int]:
        """Return the FPN levels (log2 of the stride) of the first and last
        stride, checking that the strides form a pyramid."""
        levels = [math.log2(s) for s in featmap_strides]
        first = round(levels[0])
        if any(not math.isclose(level, first + i)
               for i, level in enumerate(levels)):
            raise ValueError('featmap_strides must be powers of two of '
                             f'consecutive levels, got {featmap_strides}')
        return first, first + len(levels) - 1

    def map_roi_levels(self, rois: Tensor, img_areas: Tensor) -> Tensor:
        """Map RoIs to pyramid levels with :attr:`level_rule`.

        Computed in float32 whatever the RoI dtype (as detectron2 does).

        Args:
            rois (Tensor): RoIs ``(batch_idx, x1, y1, x2, y2)`` in pixels of
                the network input, shape (k, 5).
            img_areas (Tensor): Area in pixels of each RoI's image, shape
                (k, ).

        Returns:
            Tensor: Level index (0-based, into ``featmap_strides``) of each
            RoI, shape (k, ), int64.
        """
        boxes = rois[:, 1:].float()
        box_areas = ((boxes[:, 2] - boxes[:, 0]).clamp(min=0) *
                     (boxes[:, 3] - boxes[:, 1]).clamp(min=0))
        if self.level_rule == 'ratio':
            levels = torch.ceil(self.max_level -
                                torch.log2(img_areas.float() / box_areas +
                                           _EPS))
        else:
            levels = torch.floor(
                self.canonical_level +
                torch.log2(box_areas.sqrt() / self.canonical_box_size + _EPS))
        levels = levels.clamp(min=self.min_level, max=self.max_level)
        return levels.long() - self.min_level

    def with_min_extent(self, boxes: Tensor) -> Tensor:
        """Boxes as pooled: width and height at least :attr:`min_roi_size`.

        Args:
            boxes (Tensor): Boxes ``(x1, y1, x2, y2)`` in pixels, shape
                (k, 4).

        Returns:
            Tensor: The boxes with ``x2 = max(x2, x1 + min_roi_size)`` (``y2``
            likewise), shape (k, 4). Boxes at least that large, and invalid
            boxes (``x2 < x1``, left for the RoI layer to refuse), are
            returned unchanged.
        """
        if self.min_roi_size == 0:
            return boxes
        x1, y1, x2, y2 = boxes.unbind(-1)
        x2 = torch.where(x2 < x1, x2, torch.maximum(x2,
                                                    x1 + self.min_roi_size))
        y2 = torch.where(y2 < y1, y2, torch.maximum(y2,
                                                    y1 + self.min_roi_size))
        return torch.stack([x1, y1, x2, y2], -1)

    def roi_image_areas(
            self,
            feats: Sequence[Tensor],
            rois: Tensor,
            batch_img_metas: Optional[List[dict]] = None) -> Tensor:
        """Area of the image each RoI belongs to.

        Args:
            feats (Sequence[Tensor]): Pooled feature maps, each (B, C, H, W).
            rois (Tensor): RoIs, shape (k, 5).
            batch_img_metas (list[dict], optional): Per-image metas with
                ``img_shape`` (unpadded ``(h, w)`` of the network input).

        Returns:
            Tensor: ``h * w`` in pixels per RoI, shape (k, ), float32.
        """
        if batch_img_metas is None:
            stride = self.featmap_strides[0]
            pad_h, pad_w = feats[0].shape[-2:]
            return rois.new_full((rois.size(0), ),
                                 float(pad_h * stride * pad_w * stride),
                                 dtype=torch.float32)
        areas = [
            meta['img_shape'][0] * meta['img_shape'][1]
            for meta in batch_img_metas
        ]
        areas = rois.new_tensor(areas, dtype=torch.float32)
        return areas[rois[:, 0].long()]

    def forward(self,
                feats: Tuple[Tensor],
                rois: Tensor,
                roi_scale_factor: Optional[float] = None,
                batch_img_metas: Optional[List[dict]] = None) -> Tensor:
        """Pool every RoI from its assigned level.

        Args:
            feats (tuple[Tensor]): Feature maps (B, C, H_l, W_l) with the
                strides of ``featmap_strides``; extra trailing levels (e.g.
                P6, P7) are ignored.
            rois (Tensor): RoIs ``(batch_idx, x1, y1, x2, y2)`` in pixels of
                the network input, shape (k, 5).
            roi_scale_factor (float, optional): Scale RoIs around their
                centre by this factor after the level assignment.
            batch_img_metas (list[dict], optional): Per-image metas with
                ``img_shape``; see the class docstring for the fallback.

        Returns:
            Tensor: RoI features, shape (k, C, S, S), float32.
        """
        if len(feats) < self.num_inputs:
            raise ValueError(f'expected at least {self.num_inputs} feature '
                             f'maps, got {len(feats)}')
        # float32 pooling under mixed precision: mmcv's RoIAlign has no
        # bfloat16 kernel, and float16 RoIs would round pixel coordinates
        feats = [feat.float() for feat in feats[:self.num_inputs]]
        rois = rois.float()
        target_lvls = self.map_roi_levels(
            rois, self.roi_image_areas(feats, rois, batch_img_metas))
        if roi_scale_factor is not None:
            rois = self.roi_rescale(rois, roi_scale_factor)
        rois = torch.cat([rois[:, :1], self.with_min_extent(rois[:, 1:])], 1)

        # RoIs grouped by level (input order kept), one host read of counts
        order = torch.sort(target_lvls, stable=True)[1]
        counts = torch.bincount(target_lvls, minlength=self.num_inputs)
        level_inds = order.split(counts.tolist())
        pooled = [(inds, roi_layer(feat, rois[inds]))
                  for feat, roi_layer, inds in zip(feats, self.roi_layers,
                                                   level_inds)
                  if len(inds) > 0]
        roi_feats = self._output_buffer(feats[0], rois.size(0), pooled)
        for inds, level_feats in pooled:
            roi_feats[inds] = level_feats
        for feat, inds in zip(feats, level_inds):
            if len(inds) == 0 and self.training:
                # keep unused levels in the graph (DDP), as SingleRoIExtractor
                roi_feats += sum(
                    p.view(-1)[0]
                    for p in self.parameters()) * 0. + feat.sum() * 0.
        return roi_feats

    def _output_buffer(self, feat: Tensor, num_rois: int,
                       pooled: List[Tuple[Tensor, Tensor]]) -> Tensor:
        """Zeros (k, C, S, S) in the memory format of the pooled levels
        (channels-last from :class:`SparseRoIAlign` on the CPU), so that
        filling it is no layout conversion."""
        layout = torch.contiguous_format
        if pooled and not pooled[0][1].is_contiguous():
            layout = torch.channels_last
        return torch.zeros(
            num_rois,
            self.out_channels,
            *self.roi_layers[0].output_size,
            dtype=feat.dtype,
            device=feat.device).contiguous(memory_format=layout)
