"""The head of point-representation CenterMask (Wang et al., CVPR 2020).

Wang, Xu, Shen, Cheng, Yang, "CenterMask: Single Shot Instance Segmentation
with Point Representation", CVPR 2020 (arXiv 2004.04446). Not Lee & Park's
CenterMask (FCOS + SAG-Mask), which this package registers as ``CenterMask``.

CenterNet's three heads (centre heatmap, box size, centre offset) plus a
Shape head (an S x S local-shape vector at every location) and a Saliency
head (a dense global saliency map). Each instance mask is
``sigmoid(local shape resized to the box) * sigmoid(saliency cropped by the
box)``, assembled for all instances at once on the stride-4 canvas
(:mod:`mmcentermask.models.utils.point_mask_assembly`).

Shape shorthand: B images, C classes, S the local-shape side, H x W the
feature grid (input / 4), N instances, K detections per image.
"""
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.dense_heads import CenterNetHead
from mmdet.models.utils import (get_local_maximum, get_topk_from_heatmap,
                                multi_apply, transpose_and_gather_feat)
from mmdet.registry import MODELS
from mmdet.utils import (ConfigType, InstanceList, OptConfigType,
                         OptInstanceList, OptMultiConfig)
from mmengine.model import bias_init_with_prob, normal_init
from mmengine.structures import InstanceData
from torch import Tensor, nn

from ..utils import (assemble_masks, clamp_box_size, mask_bce_per_instance,
                     masks_on_grid, to_output_frame, union_per_channel)

SALIENCY_TYPES = ('class_specific', 'class_agnostic')


def set_mask_settings(head: nn.Module, num_classes: int, shape_size: int,
                      saliency_type: str, min_box_size: float,
                      loss_mask_weight: float,
                      loss_saliency: OptConfigType) -> int:
    """Check and store the Shape / Saliency settings shared by the point
    heads (``shape_size``, ``saliency_type``, ``min_box_size``,
    ``loss_mask_weight``, the built ``loss_saliency``) on ``head``.

    Returns:
        int: Channels of the saliency map: ``num_classes`` (class-specific)
        or 1 (class-agnostic).

    Raises:
        ValueError: An unknown saliency type, ``shape_size < 1`` or
            ``min_box_size <= 0``, named with its value.
    """
    if saliency_type not in SALIENCY_TYPES:
        raise ValueError(f'saliency_type={saliency_type!r} is not one of '
                         f'{SALIENCY_TYPES}')
    if shape_size < 1:
        raise ValueError(f'shape_size={shape_size} must be >= 1')
    if min_box_size <= 0:
        raise ValueError(
            f'min_box_size={min_box_size} must be > 0 feature pixels')
    head.shape_size = shape_size
    head.saliency_type = saliency_type
    head.min_box_size = min_box_size
    head.loss_mask_weight = loss_mask_weight
    head.loss_saliency = (
        MODELS.build(loss_saliency) if loss_saliency is not None else None)
    return num_classes if saliency_type == 'class_specific' else 1


@MODELS.register_module()
class CenterMaskPointHead(CenterNetHead):
    """Five-branch head of point-representation CenterMask.

    Every branch is CenterNet's ``3x3 conv -> ReLU -> 1x1 conv``. With
    several feature levels (the stacks of a HourglassNet) each level gets
    its own set of five branches; the losses are averaged over the levels
    and prediction uses the last level.

    Training (spec "teacher forcing"): each GT instance takes the shape
    vector at its GT centre cell and is resized and cropped with its GT box
    (in feature pixels, at least ``min_box_size`` wide and high); the mask
    loss is the binary cross-entropy between the assembled mask and the GT
    mask downsampled to the feature grid by area averaging, averaged over
    the box's pixels, then over the instances of the batch, in float32.

    Args:
        in_channels (int): Channels of each input feature map.
        feat_channels (int): Channels inside each branch.
        num_classes (int): Number of foreground classes.
        shape_size (int): Side S of the local shape (S^2 shape channels).
            Defaults to 32 (the paper's).
        saliency_type (str): ``'class_specific'`` (C saliency channels,
            the channel of the instance's class is cropped; the paper's
            final model) or ``'class_agnostic'`` (one channel). Defaults to
            ``'class_specific'``.
        num_feat_levels (int): Number of input feature maps, each with its
            own branches (2 for a two-stack HourglassNet). Defaults to 1.
        min_box_size (float): Smallest box width and height used for mask
            assembly, feature pixels. Defaults to 1.0.
        loss_center_heatmap (dict): Heatmap loss (Eq. 3). Defaults to
            ``GaussianFocalLoss(alpha=2, gamma=4)``.
        loss_wh (dict): Box-size loss (Eq. 5). Defaults to ``L1Loss`` with
            weight 0.1.
        loss_offset (dict): Centre-offset loss (Eq. 4). Defaults to
            ``L1Loss`` with weight 1.
        loss_mask_weight (float): Weight of the mask loss (Eq. 2). Defaults
            to 1.0.
        loss_saliency (dict, optional): Direct supervision of the saliency
            logits with the per-class (class-specific) or all-class
            (class-agnostic) union of the GT masks on the feature grid, or
            None for none. Defaults to sigmoid ``CrossEntropyLoss`` with
            weight 1.
        train_cfg (dict, optional): Unused; kept for the detector.
        test_cfg (dict, optional): ``topk`` (peaks per image), ``local_
            maximum_kernel``, ``score_thr`` (drop detections scoring
            below), ``mask_thr_binary`` (binarisation of the mask
            probabilities).
        init_cfg (dict or list[dict], optional): Initialisation config.
    """

    def __init__(self,
                 in_channels: int,
                 feat_channels: int,
                 num_classes: int,
                 shape_size: int = 32,
                 saliency_type: str = 'class_specific',
                 num_feat_levels: int = 1,
                 min_box_size: float = 1.0,
                 loss_center_heatmap: ConfigType = dict(
                     type='GaussianFocalLoss',
                     alpha=2.0,
                     gamma=4.0,
                     loss_weight=1.0),
                 loss_wh: ConfigType = dict(type='L1Loss', loss_weight=0.1),
                 loss_offset: ConfigType = dict(
                     type='L1Loss', loss_weight=1.0),
                 loss_mask_weight: float = 1.0,
                 loss_saliency: OptConfigType = dict(
                     type='CrossEntropyLoss',
                     use_sigmoid=True,
                     loss_weight=1.0),
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        if num_feat_levels < 1:
            raise ValueError(
                f'num_feat_levels={num_feat_levels}: give the number of '
                'feature maps the backbone/neck returns (>= 1)')
        super().__init__(
            in_channels=in_channels,
            feat_channels=feat_channels,
            num_classes=num_classes,
            loss_center_heatmap=loss_center_heatmap,
            loss_wh=loss_wh,
            loss_offset=loss_offset,
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            init_cfg=init_cfg)
        self.num_feat_levels = num_feat_levels
        saliency_channels = set_mask_settings(self, num_classes, shape_size,
                                              saliency_type, min_box_size,
                                              loss_mask_weight, loss_saliency)

        def branches(out_channels: int) -> nn.ModuleList:
            return nn.ModuleList(
                self._build_head(in_channels, feat_channels, out_channels)
                for _ in range(num_feat_levels))

        self.heatmap_head = branches(num_classes)
        self.wh_head = branches(2)
        self.offset_head = branches(2)
        self.shape_head = branches(shape_size**2)
        self.saliency_head = branches(saliency_channels)

    def init_weights(self) -> None:
        """CenterNet's initialisation: heatmap bias for a prior of 0.1;
        normal(std=0.001) for the size, offset, shape and saliency
        branches, so every mask starts at sigmoid(0)^2 = 0.25."""
        bias_init = bias_init_with_prob(0.1)
        for heatmap_head in self.heatmap_head:
            heatmap_head[-1].bias.data.fill_(bias_init)
        for branch in (self.wh_head, self.offset_head, self.shape_head,
                       self.saliency_head):
            for module in branch.modules():
                if isinstance(module, nn.Conv2d):
                    normal_init(module, std=0.001)

    def forward(self, x: Sequence[Tensor]) -> Tuple[List[Tensor], ...]:
        """Run each level's five branches on its feature map.

        Args:
            x (Sequence[Tensor]): ``num_feat_levels`` feature maps, each
                (B, in_channels, H, W).

        Returns:
            tuple[list[Tensor], ...]: Per level: heatmaps (B, C, H, W)
            after sigmoid, sizes (B, 2, H, W) as (w, h) in feature pixels,
            offsets (B, 2, H, W) as (dx, dy) in feature pixels, shape
            logits (B, S^2, H, W) and saliency logits (B, C or 1, H, W).
        """
        if len(x) != self.num_feat_levels:
            raise ValueError(
                f'{type(self).__name__} has branches for num_feat_levels='
                f'{self.num_feat_levels} feature maps but got {len(x)}; set '
                f'num_feat_levels={len(x)} (2 for a two-stack HourglassNet)')
        return multi_apply(self.forward_single, x, range(len(x)))

    def forward_single(self, x: Tensor, level: int) -> Tuple[Tensor, ...]:
        """The five branches of one level on its (B, in_channels, H, W)
        feature map; see :meth:`forward` for the outputs."""
        return (self.heatmap_head[level](x).sigmoid(),
                self.wh_head[level](x), self.offset_head[level](x),
                self.shape_head[level](x), self.saliency_head[level](x))

    def loss_by_feat(
            self,
            center_heatmap_preds: List[Tensor],
            wh_preds: List[Tensor],
            offset_preds: List[Tensor],
            shape_preds: List[Tensor],
            saliency_preds: List[Tensor],
            batch_gt_instances: InstanceList,
            batch_img_metas: List[dict],
            batch_gt_instances_ignore: OptInstanceList = None
    ) -> Dict[str, Tensor]:
        """CenterNet's losses plus the mask (and saliency) loss, averaged
        over the feature levels.

        Args:
            center_heatmap_preds, wh_preds, offset_preds, shape_preds,
                saliency_preds (list[Tensor]): Per level, see
                :meth:`forward`.
            batch_gt_instances (list[InstanceData]): ``bboxes`` (n, 4) xyxy
                input pixels, ``labels`` (n,), ``masks`` (BitmapMasks or
                PolygonMasks) of each image.
            batch_img_metas (list[dict]): ``batch_input_shape`` at least.
            batch_gt_instances_ignore: Unused (crowd boxes are not
                supervised, as in CenterNet).

        Returns:
            dict[str, Tensor]: ``loss_center_heatmap``, ``loss_wh``,
            ``loss_offset``, ``loss_mask`` and, with ``loss_saliency``
            configured, ``loss_saliency``.
        """
        img_shape = batch_img_metas[0]['batch_input_shape']
        feat_shape = tuple(center_heatmap_preds[0].shape[-2:])
        mask_targets = self.get_mask_targets(batch_gt_instances, feat_shape,
                                             img_shape)
        level_losses = []
        for heatmap, wh, offset, shape, saliency in zip(
                center_heatmap_preds, wh_preds, offset_preds, shape_preds,
                saliency_preds):
            losses = super().loss_by_feat([heatmap], [wh], [offset],
                                          batch_gt_instances,
                                          batch_img_metas)
            losses.update(
                self.loss_mask_by_feat(shape, saliency, batch_gt_instances,
                                       mask_targets, img_shape))
            level_losses.append(losses)
        return {
            key: sum(losses[key] for losses in level_losses) /
            len(level_losses)
            for key in level_losses[0]
        }

    def get_mask_targets(self, batch_gt_instances: InstanceList,
                         feat_shape: Tuple[int, int],
                         img_shape: Tuple[int, int]) -> List[Tensor]:
        """GT masks on the feature grid, by area averaging.

        Args:
            batch_gt_instances (list[InstanceData]): ``masks`` of each
                image, at most ``img_shape`` in size (padded with zeros to
                it).
            feat_shape (tuple[int, int]): (H, W) of the feature grid.
            img_shape (tuple[int, int]): (h, w) of the padded batch input,
                pixels.

        Returns:
            list[Tensor]: Per image, (n, H, W) float32 targets in [0, 1]:
            the fraction of each feature cell covered by the mask.
        """
        return [
            masks_on_grid(
                gt.masks.to_tensor(torch.float32, gt.bboxes.device),
                feat_shape, img_shape) for gt in batch_gt_instances
        ]

    def gather_instances(self, shape_pred: Tensor, saliency_pred: Tensor,
                         image_ids: Tensor, labels: Tensor, cells_x: Tensor,
                         cells_y: Tensor) -> Tuple[Tensor, Tensor]:
        """The local-shape maps at the centre cells and the saliency
        channels of N instances.

        Args:
            shape_pred (Tensor): (B, S^2, H, W) shape logits.
            saliency_pred (Tensor): (B, C or 1, H, W) saliency logits.
            image_ids (Tensor): (N,) image of each instance.
            labels (Tensor): (N,) class of each instance.
            cells_x, cells_y (Tensor): (N,) integer centre cell.

        Returns:
            tuple[Tensor, Tensor]: (N, S, S) shape logits and (N, H, W)
            saliency logits.
        """
        shapes = shape_pred[image_ids, :, cells_y, cells_x].view(
            -1, self.shape_size, self.shape_size)
        channels = (
            labels if self.saliency_type == 'class_specific' else
            torch.zeros_like(labels))
        return shapes, saliency_pred[image_ids, channels]

    def loss_mask_by_feat(self, shape_pred: Tensor, saliency_pred: Tensor,
                          batch_gt_instances: InstanceList,
                          mask_targets: List[Tensor],
                          img_shape: Tuple[int, int]) -> Dict[str, Tensor]:
        """Mask loss (Eq. 2) and optional saliency loss of one level.

        Args:
            shape_pred (Tensor): (B, S^2, H, W) shape logits.
            saliency_pred (Tensor): (B, C or 1, H, W) saliency logits.
            batch_gt_instances (list[InstanceData]): ``bboxes`` (n, 4) xyxy
                input pixels and ``labels`` (n,) of each image.
            mask_targets (list[Tensor]): (n, H, W) per image, see
                :meth:`get_mask_targets`.
            img_shape (tuple[int, int]): (h, w) of the padded batch input.

        Returns:
            dict[str, Tensor]: ``loss_mask`` (0 without GT, still connected
            to the graph) and, if configured, ``loss_saliency``.
        """
        feat_h, feat_w = shape_pred.shape[-2:]
        scale = shape_pred.new_tensor([
            feat_w / img_shape[1], feat_h / img_shape[0], feat_w /
            img_shape[1], feat_h / img_shape[0]
        ])
        boxes = torch.cat([gt.bboxes for gt in batch_gt_instances]) * scale
        labels = torch.cat([gt.labels for gt in batch_gt_instances])
        image_ids = torch.cat([
            torch.full_like(gt.labels, i)
            for i, gt in enumerate(batch_gt_instances)
        ])
        targets = torch.cat(mask_targets)  # (N, H, W)
        losses = {}
        if self.loss_saliency is not None:
            losses['loss_saliency'] = self.loss_saliency(
                saliency_pred,
                self.saliency_targets(targets, labels, image_ids,
                                      saliency_pred.shape))
        if len(boxes) == 0:
            losses['loss_mask'] = (shape_pred.sum() + saliency_pred.sum()) * 0
            return losses
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        # The centre cell of CenterNet's targets (mmdet truncates).
        cells_x = centres[:, 0].long().clamp(0, feat_w - 1)
        cells_y = centres[:, 1].long().clamp(0, feat_h - 1)
        shapes, saliencies = self.gather_instances(shape_pred, saliency_pred,
                                                   image_ids, labels, cells_x,
                                                   cells_y)
        boxes = clamp_box_size(boxes, self.min_box_size)
        # Float32 even under autocast: the BCE of a product of sigmoids.
        masks, inside = assemble_masks(shapes.float(), saliencies.float(),
                                       boxes.float())
        per_instance = mask_bce_per_instance(masks, inside, targets)
        losses['loss_mask'] = self.loss_mask_weight * per_instance.mean()
        return losses

    def saliency_targets(self, mask_targets: Tensor, labels: Tensor,
                         image_ids: Tensor, saliency_shape: torch.Size
                         ) -> Tensor:
        """Union of the GT masks per image and saliency channel.

        Args:
            mask_targets (Tensor): (N, H, W) targets of all instances.
            labels (Tensor): (N,) their classes.
            image_ids (Tensor): (N,) their images.
            saliency_shape (torch.Size): (B, C or 1, H, W).

        Returns:
            Tensor: Targets of ``saliency_shape``: the largest instance
            target per pixel among the instances of that image and channel.
        """
        batch, channels = saliency_shape[:2]
        channel = labels if channels > 1 else torch.zeros_like(labels)
        return union_per_channel(mask_targets, image_ids * channels + channel,
                                 batch * channels).view(saliency_shape)

    def predict_by_feat(self,
                        center_heatmap_preds: List[Tensor],
                        wh_preds: List[Tensor],
                        offset_preds: List[Tensor],
                        shape_preds: List[Tensor],
                        saliency_preds: List[Tensor],
                        batch_img_metas: List[dict],
                        rescale: bool = True) -> InstanceList:
        """Top-K centre peaks (no NMS) with boxes and masks, from the last
        level.

        Args:
            center_heatmap_preds, wh_preds, offset_preds, shape_preds,
                saliency_preds (list[Tensor]): Per level, see
                :meth:`forward`.
            batch_img_metas (list[dict]): ``batch_input_shape``,
                ``img_shape``, ``ori_shape``, optionally ``border`` (from
                ``RandomCenterCropPad`` in test mode) and ``scale_factor``.
            rescale (bool): Return boxes and masks in the original image
                (``ori_shape``) instead of the network-input image.

        Returns:
            list[InstanceData]: Per image ``bboxes`` (K, 4) xyxy pixels,
            ``scores`` (K,) heatmap peaks, ``labels`` (K,) and ``masks``
            (K, h, w) bool, K <= ``test_cfg.topk``.
        """
        return [
            self._predict_by_feat_single(
                center_heatmap_preds[-1][i:i + 1], wh_preds[-1][i:i + 1],
                offset_preds[-1][i:i + 1], shape_preds[-1][i:i + 1],
                saliency_preds[-1][i:i + 1], img_meta, rescale)
            for i, img_meta in enumerate(batch_img_metas)
        ]

    def _predict_by_feat_single(self, center_heatmap_pred: Tensor,
                                wh_pred: Tensor, offset_pred: Tensor,
                                shape_pred: Tensor, saliency_pred: Tensor,
                                img_meta: dict,
                                rescale: bool = True) -> InstanceData:
        """Detections of one image; inputs are (1, ., H, W) slices of the
        :meth:`forward` outputs. See :meth:`predict_by_feat`."""
        cfg = self.test_cfg
        feat_h, feat_w = center_heatmap_pred.shape[-2:]
        input_h, input_w = img_meta['batch_input_shape']
        heatmap = get_local_maximum(
            center_heatmap_pred, kernel=cfg.get('local_maximum_kernel', 3))
        topk = min(cfg.get('topk', 100), heatmap.numel())
        scores, indices, labels, cells_y, cells_x = get_topk_from_heatmap(
            heatmap, k=topk)  # each (1, K)
        keep = scores[0] >= cfg.get('score_thr', 0.0)
        scores, indices, labels = scores[0][keep], indices[:, keep], labels[
            0][keep]
        cells_x, cells_y = cells_x[0][keep].long(), cells_y[0][keep].long()
        # (K, 2); a negative predicted size (e.g. untrained weights) is an
        # empty box, never one with x2 < x1
        wh = transpose_and_gather_feat(wh_pred, indices)[0].clamp(min=0)
        offset = transpose_and_gather_feat(offset_pred, indices)[0]
        centres = torch.stack([cells_x, cells_y], dim=1) + offset
        boxes = torch.cat([centres - wh / 2, centres + wh / 2], dim=1)

        shapes, saliencies = self.gather_instances(
            shape_pred, saliency_pred, torch.zeros_like(labels), labels,
            cells_x, cells_y)
        masks, _ = assemble_masks(shapes, saliencies,
                                  clamp_box_size(boxes, self.min_box_size))
        # Feature pixels -> network-input pixels.
        boxes = boxes * boxes.new_tensor([input_w / feat_w, input_h / feat_h]
                                         ).repeat(2)
        masks = resize_masks(masks, (input_h, input_w))
        if 'border' in img_meta:  # RandomCenterCropPad's test padding
            top, bottom, left, right = (int(b) for b in img_meta['border'])
        else:
            top, left = 0, 0
            bottom, right = img_meta['img_shape'][:2]
        masks = masks[:, top:bottom, left:right]
        boxes = boxes - boxes.new_tensor([left, top]).repeat(2)
        if rescale:
            if 'scale_factor' in img_meta:
                boxes = to_output_frame(boxes, img_meta['scale_factor'])
            size = tuple(img_meta['ori_shape'][:2])
        else:
            size = tuple(masks.shape[-2:])
        results = InstanceData()
        results.bboxes = boxes
        results.scores = scores
        results.labels = labels
        results.masks = binary_masks_of_size(masks, size,
                                             cfg.get('mask_thr_binary', 0.5))
        return results



#: Float32 bytes of resized mask probabilities held at once while the masks
#: of one image are resized to the original image and thresholded.
RESIZE_CHUNK_BYTES = 2**28


def binary_masks_of_size(masks: Tensor, size: Tuple[int, int],
                         threshold: float) -> Tensor:
    """Resize (N, h, w) mask probabilities to (N, *size) and threshold
    them, a chunk of masks at a time.

    The result is what ``resize_masks(masks, size) >= threshold`` gives,
    but the float32 probabilities at ``size`` are held for at most
    :data:`RESIZE_CHUNK_BYTES` (256 MB) at once: for a 6000 x 8000 photo
    one resized mask is 192 MB, 100 of them 19 GB. Peak memory is the
    (N, *size) bool result plus one chunk.

    Args:
        masks (Tensor): (N, h, w) probabilities; N may be 0.
        size (tuple[int, int]): (H, W) of the result.
        threshold (float): Probabilities ``>= threshold`` are foreground.

    Returns:
        Tensor: (N, H, W) bool.
    """
    height, width = size
    binary = masks.new_zeros((len(masks), height, width), dtype=torch.bool)
    per_chunk = max(1, RESIZE_CHUNK_BYTES // (4 * height * width))
    for start in range(0, len(masks), per_chunk):
        chunk = masks[start:start + per_chunk]
        binary[start:start + len(chunk)] = resize_masks(chunk,
                                                        size) >= threshold
    return binary


def resize_masks(masks: Tensor, size: Tuple[int, int]) -> Tensor:
    """Bilinear resize of (N, h, w) mask probabilities to (N, *size)
    (``align_corners=False``); N may be 0."""
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    if len(masks) == 0:
        return masks.new_zeros(0, *size)
    return F.interpolate(
        masks[None], size=size, mode='bilinear', align_corners=False)[0]
