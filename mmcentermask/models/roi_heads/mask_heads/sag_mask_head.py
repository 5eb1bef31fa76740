"""SAG-Mask, the spatial-attention-guided mask head of CenterMask.

Shape shorthand: ``n`` = number of RoIs, ``C`` = channels, ``S`` = RoI
feature size (14), ``M`` = mask size (28 = 2 * S), ``K`` = number of classes.
"""
from typing import List, Tuple

import torch
from mmdet.models.roi_heads.mask_heads import FCNMaskHead
from mmdet.models.task_modules.samplers import SamplingResult
from mmdet.registry import MODELS
from mmdet.structures.mask import BaseInstanceMasks
from mmdet.utils import InstanceList, MultiConfig
from mmengine.config import ConfigDict
from mmengine.model import BaseModule
from mmengine.model.weight_init import normal_init
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from ...utils import force_float32

# detectron2's c2_msra_fill: kaiming_normal_(fan_out, relu), bias 0
C2_MSRA_FILL = dict(
    type='Kaiming',
    mode='fan_out',
    nonlinearity='relu',
    distribution='normal',
    bias=0)


class SpatialAttention(BaseModule):
    """Spatial attention module (SAM) of CenterMask.

    ``out = x * sigmoid(conv([mean_c(x), max_c(x)]))``: the channel-wise mean
    map and max map are concatenated **in that order** and reduced to one
    map by a bias-free ``kernel_size`` conv (centermask2 ``spatialAtt``).

    Args:
        kernel_size (int): 3 (CenterMask) or 7. Defaults to 3.
        init_cfg (dict or list[dict]): Defaults to detectron2's
            ``c2_msra_fill`` on the conv.
    """

    def __init__(
        self,
        kernel_size: int = 3,
        init_cfg: MultiConfig = dict(layer='Conv2d', **C2_MSRA_FILL)
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if kernel_size not in (3, 7):
            raise ValueError(f'kernel_size must be 3 or 7, got {kernel_size}')
        self.conv = nn.Conv2d(
            2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """Re-weight every position of ``x`` (n, C, H, W) by its attention.

        Returns:
            Tensor: Attended features, shape (n, C, H, W).
        """
        pooled = torch.cat(
            [x.mean(dim=1, keepdim=True),
             x.amax(dim=1, keepdim=True)], dim=1)
        return x * self.conv(pooled).sigmoid()


def unclipped_mask_target(pos_priors: Tensor, pos_assigned_gt_inds: Tensor,
                          gt_masks: BaseInstanceMasks, mask_size: Tuple[int,
                                                                        int],
                          binarize: bool) -> Tensor:
    """Crop and resize GT masks to the positive RoIs without clipping them.

    Unlike :func:`mmdet.structures.mask.mask_target`, the RoIs are **not**
    clipped to the image first, so the target covers the same window as
    the RoI features the mask is predicted from (detectron2 behaviour; the
    two coincide for RoIs inside the image).

    Args:
        pos_priors (Tensor): Positive RoIs in pixels, shape (p, 4).
        pos_assigned_gt_inds (Tensor): Index of the GT of each RoI, (p, ).
        gt_masks (:obj:`BaseInstanceMasks`): GT masks of the image.
        mask_size (tuple[int, int]): Target size (M, M).
        binarize (bool): Binarise bitmap targets.

    Returns:
        Tensor: Targets in {0, 1}, shape (p, M, M), float32.
    """
    if pos_priors.size(0) == 0:
        return pos_priors.new_zeros((0, ) + tuple(mask_size))
    targets = gt_masks.crop_and_resize(
        pos_priors.detach().cpu().numpy(),
        mask_size,
        inds=pos_assigned_gt_inds.cpu().numpy(),
        device=pos_priors.device,
        binarize=binarize).to_ndarray()
    return torch.from_numpy(targets).float().to(pos_priors.device)


@MODELS.register_module()
class SAGMaskHead(FCNMaskHead):
    """Spatial-attention-guided mask head of `CenterMask
    <https://arxiv.org/abs/1911.06667>`_ (centermask2
    ``SpatialAttentionMaskHead``).

    ``num_convs`` x (3x3 conv + ReLU) -> :class:`SpatialAttention` -> 2x2
    stride-2 deconv + ReLU -> 1x1 class-specific predictor. CenterMask uses
    4 x 256 convs, CenterMask-Lite 2 x 128. Weights are initialised as in
    centermask2: ``c2_msra_fill`` for the convs, the SAM conv and the deconv,
    N(0, 0.001) with zero bias for the predictor (``conv_logits``).

    Everything else (losses, targets, test-time pasting) is
    :class:`FCNMaskHead`'s, except that training targets are cropped from
    **unclipped** RoIs by default (see :func:`unclipped_mask_target`).

    Args:
        sam_kernel_size (int): Kernel of the SAM conv, 3 or 7.
            Defaults to 3.
        clip_target_boxes (bool): Clip RoIs to the image before cropping the
            training targets, as mmdet's ``mask_target`` does. Defaults to
            False (centermask2: targets from the unclipped RoI).
        **kwargs: :class:`FCNMaskHead` arguments, with its defaults:
            ``num_convs`` (4; CenterMask-Lite 2), ``roi_feat_size`` (S, 14),
            ``in_channels`` (256), ``conv_out_channels`` (256),
            ``num_classes`` (K, 80), ``class_agnostic``, ``loss_mask``
            (per-pixel BCE on the GT-class channel), ``upsample_cfg``,
            ``conv_cfg``, ``norm_cfg``, ``predictor_cfg``; ``init_cfg`` is
            not allowed.
    """

    def __init__(self,
                 sam_kernel_size: int = 3,
                 clip_target_boxes: bool = False,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.spatial_attention = SpatialAttention(sam_kernel_size)
        self.clip_target_boxes = clip_target_boxes

    def init_weights(self) -> None:
        """centermask2 init: ``c2_msra_fill`` for the convs (ConvModule's own
        init), the SAM conv (its ``init_cfg``) and the deconv
        (FCNMaskHead), then N(0, 0.001) and zero bias for the predictor."""
        super().init_weights()
        normal_init(self.conv_logits, mean=0, std=0.001, bias=0)

    def forward(self, x: Tensor) -> Tensor:
        """Predict mask logits.

        Args:
            x (Tensor): RoI features, shape (n, C, S, S).

        Returns:
            Tensor: Mask logits, shape (n, K, M, M) (K = 1 if class
            agnostic).
        """
        return self.conv_logits(self.forward_features(x))

    def forward_features(self, x: Tensor) -> Tensor:
        """Convs, spatial attention and upsampling: the input of the
        predictor.

        Args:
            x (Tensor): RoI features, shape (n, C, S, S).

        Returns:
            Tensor: Shape (n, conv_out_channels, M, M).
        """
        for conv in self.convs:
            x = conv(x)
        x = self.spatial_attention(x)
        if self.upsample is not None:
            x = self.upsample(x)
            if self.upsample_method == 'deconv':
                x = self.relu(x)
        return x

    def predict_label_logits(self, x: Tensor, labels: Tensor) -> Tensor:
        """Mask logits of each RoI's class only: the 1x1 predictor applied
        with that class's weight row (one batched matrix product instead of
        all K output channels; the same logits up to float32 summation
        order). Inference only: the loss needs :meth:`forward`.

        Args:
            x (Tensor): RoI features, shape (n, C, S, S).
            labels (Tensor): Class of each RoI, (n, ).

        Returns:
            Tensor: Mask logits, shape (n, M, M).
        """
        features = self.forward_features(x)
        if self.class_agnostic:
            labels = torch.zeros_like(labels)
        weight = self.conv_logits.weight[labels].flatten(1)  # (n, C)
        if features.is_contiguous():
            logits = torch.bmm(weight[:, None, :], features.flatten(2))
        else:  # channels-last: (n, M*M, C) is a view, no layout copy
            pixels = features.permute(0, 2, 3, 1).flatten(1, 2)
            logits = torch.bmm(pixels, weight[:, :, None])
        logits = logits.view(-1, *features.shape[-2:])
        if self.conv_logits.bias is not None:
            logits = logits + self.conv_logits.bias[labels, None, None]
        return logits

    @force_float32
    def loss_and_target(self, mask_preds: Tensor,
                        sampling_results: List[SamplingResult],
                        batch_gt_instances: InstanceList,
                        rcnn_train_cfg: ConfigDict) -> dict:
        """:meth:`FCNMaskHead.loss_and_target` (per-pixel BCE with logits on
        the GT-class channel) in float32 with autocast off, so that ``--amp``
        training computes the mask loss on float32 logits.

        Args:
            mask_preds (Tensor): Mask logits of the positive RoIs, shape
                (num_pos, K, M, M), any floating type.
            sampling_results (list[:obj:`SamplingResult`]): Per image.
            batch_gt_instances (list[:obj:`InstanceData`]): Per image.
            rcnn_train_cfg (:obj:`ConfigDict`): See :meth:`get_targets`.

        Returns:
            dict: ``loss_mask`` = dict(loss_mask=float32 scalar) and
            ``mask_targets`` (num_pos, M, M), float32.
        """
        return super().loss_and_target(mask_preds, sampling_results,
                                       batch_gt_instances, rcnn_train_cfg)

    def get_targets(self, sampling_results: List[SamplingResult],
                    batch_gt_instances: InstanceList,
                    rcnn_train_cfg: ConfigDict) -> Tensor:
        """Mask targets of all positive RoIs of the batch.

        Args:
            sampling_results (list[:obj:`SamplingResult`]): Per image.
            batch_gt_instances (list[:obj:`InstanceData`]): Per image, with
                ``masks`` (polygon or bitmap) in the network-input frame.
            rcnn_train_cfg (:obj:`ConfigDict`): Needs ``mask_size``;
                optional ``soft_mask_target``.

        Returns:
            Tensor: Targets, shape (num_pos, M, M), float32.
        """
        if self.clip_target_boxes:
            return super().get_targets(sampling_results, batch_gt_instances,
                                       rcnn_train_cfg)
        mask_size = _pair(rcnn_train_cfg.mask_size)
        binarize = not rcnn_train_cfg.get('soft_mask_target', False)
        return torch.cat([
            unclipped_mask_target(res.pos_priors, res.pos_assigned_gt_inds,
                                  gt.masks, mask_size, binarize)
            for res, gt in zip(sampling_results, batch_gt_instances)
        ])
