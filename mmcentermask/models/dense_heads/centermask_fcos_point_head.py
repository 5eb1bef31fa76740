"""Point-representation CenterMask embedded into FCOS (Wang et al., CVPR
2020, the "CenterMask-FCOS" experiment).

The paper adds its Local Shape and Global Saliency branches to FCOS; how
exactly is not recovered (reference spec, section 8.4). Here:

- every FPN location (P3-P7, one branch shared over the levels like FCOS's
  towers) predicts an S x S local-shape vector;
- the saliency map is predicted on P3 (stride 8, the finest FCOS level),
  class-specific or class-agnostic; or, with ``num_saliency_only_levels=1``
  (ours, for small objects), on a stride-4 P2 level that only the saliency
  branch reads;
- each detection's mask is ``sigmoid(its shape resized to its box) *
  sigmoid(saliency cropped by its box)``, assembled on the saliency canvas
  (:mod:`mmcentermask.models.utils.point_mask_assembly`);
- training supervises every FCOS positive location with the mask of the GT
  it is assigned to, resized and cropped with that GT box (teacher
  forcing); the box comes from FCOS (no size head).

Shape shorthand: B images, C classes, S the local-shape side, H_l x W_l the
size of level l, H x W the saliency canvas (P3, or P2), N instances.
"""
import copy
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmdet.models.utils import select_single_mlvl
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, InstanceList, OptConfigType
from mmengine.model import normal_init
from mmengine.structures import InstanceData
from torch import Tensor, nn

from ..utils import (assemble_masks, clamp_box_size, mask_bce_per_instance,
                     masks_on_grid, to_output_frame, union_per_channel)
from .centermask_fcos_head import CenterMaskFCOSHead
from .centermask_point_head import (binary_masks_of_size, resize_masks,
                                    set_mask_settings)


@MODELS.register_module()
class CenterMaskFCOSPointHead(CenterMaskFCOSHead):
    """:class:`CenterMaskFCOSHead` with point-representation CenterMask's
    Shape and Saliency branches (see the module docstring).

    Args:
        num_classes (int): Number of foreground classes.
        in_channels (int): Channels of the FPN maps.
        shape_size (int): Side S of the local shape. Defaults to 32.
        saliency_type (str): ``'class_specific'`` or ``'class_agnostic'``.
            Defaults to ``'class_specific'``.
        mask_channels (int): Channels inside the shape and saliency
            branches (3x3 conv -> ReLU -> 1x1 conv). Defaults to 256.
        min_box_size (float): Smallest box side for the mask assembly, in
            pixels of the saliency canvas. Defaults to 1.0.
        loss_mask_weight (float): Weight of the mask BCE. Defaults to 1.0.
        loss_saliency (dict, optional): Direct saliency supervision with
            the union of the GT masks on the saliency canvas, or None.
            Defaults to sigmoid ``CrossEntropyLoss``.
        num_saliency_only_levels (int): Leading FPN levels finer than P3
            that only the saliency branch reads: 0 (P3-P7 for every branch)
            or 1 (the head gets P2-P7 from a neck with ``num_outs`` 6; the
            saliency, and so the mask assembly, is on stride-4 P2; FCOS and
            the shape branch read P3-P7). Defaults to 0.
        **kwargs: :class:`CenterMaskFCOSHead` arguments; ``test_cfg`` also
            takes ``mask_thr_binary`` (defaults to 0.5).
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 shape_size: int = 32,
                 saliency_type: str = 'class_specific',
                 mask_channels: int = 256,
                 min_box_size: float = 1.0,
                 loss_mask_weight: float = 1.0,
                 loss_saliency: OptConfigType = dict(
                     type='CrossEntropyLoss',
                     use_sigmoid=True,
                     loss_weight=1.0),
                 num_saliency_only_levels: int = 0,
                 **kwargs) -> None:
        super().__init__(
            num_classes=num_classes, in_channels=in_channels, **kwargs)
        if num_saliency_only_levels not in (0, 1):
            raise ValueError(
                f'num_saliency_only_levels={num_saliency_only_levels!r}: it '
                'must be 0 (saliency on P3) or 1 (saliency on a stride-4 P2 '
                'that the neck outputs first)')
        self.num_saliency_only_levels = num_saliency_only_levels
        saliency_channels = set_mask_settings(self, num_classes, shape_size,
                                              saliency_type, min_box_size,
                                              loss_mask_weight, loss_saliency)
        self.shape_head = self._mask_branch(in_channels, mask_channels,
                                            shape_size**2)
        self.saliency_head = self._mask_branch(in_channels, mask_channels,
                                               saliency_channels)

    @staticmethod
    def _mask_branch(in_channels: int, channels: int,
                     out_channels: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1),
            nn.ReLU(inplace=True), nn.Conv2d(channels, out_channels, 1))

    def init_weights(self) -> None:
        """FCOS's initialisation, then normal(std=0.001) for the shape and
        saliency branches (every mask starts at 0.25)."""
        super().init_weights()
        for branch in (self.shape_head, self.saliency_head):
            for module in branch.modules():
                if isinstance(module, nn.Conv2d):
                    normal_init(module, std=0.001)

    def forward(self, x: Sequence[Tensor]) -> Tuple[List[Tensor], ...]:
        """FCOS outputs plus shape logits per level and the saliency.

        Args:
            x (Sequence[Tensor]): FPN maps P3-P7 (P2-P7 with
                ``num_saliency_only_levels=1``), (B, in_channels, H_l, W_l).

        Returns:
            tuple[list[Tensor], ...]: FCOS's class logits, distances and
            centerness per level of P3-P7; shape logits (B, S^2, H_l, W_l)
            per level of P3-P7; ``[saliency logits (B, C or 1, H, W)]`` of
            the first level of ``x``.
        """
        fcos_x = x[self.num_saliency_only_levels:]
        if len(fcos_x) != len(self.strides):
            raise ValueError(
                f'{type(self).__name__} got {len(x)} FPN levels, expected '
                f'{len(self.strides) + self.num_saliency_only_levels} ('
                f'{len(self.strides)} FCOS strides + num_saliency_only_levels'
                f'={self.num_saliency_only_levels}); set the neck\'s num_outs'
                ' to that.')
        cls_scores, bbox_preds, centernesses = super().forward(fcos_x)
        shape_preds = [self.shape_head(feat) for feat in fcos_x]
        return (cls_scores, bbox_preds, centernesses, shape_preds,
                [self.saliency_head(x[0])])

    def loss_by_feat(
        self,
        cls_scores: List[Tensor],
        bbox_preds: List[Tensor],
        centernesses: List[Tensor],
        shape_preds: List[Tensor],
        saliency_preds: List[Tensor],
        batch_gt_instances: InstanceList,
        batch_img_metas: List[dict],
        batch_gt_instances_ignore: Optional[InstanceList] = None
    ) -> Dict[str, Tensor]:
        """FCOS losses plus ``loss_mask`` (and ``loss_saliency``).

        Args:
            cls_scores, bbox_preds, centernesses, shape_preds,
                saliency_preds: See :meth:`forward`.
            batch_gt_instances (list[InstanceData]): ``bboxes``, ``labels``
                and ``masks`` per image.
            batch_img_metas (list[dict]): ``batch_input_shape`` at least.
            batch_gt_instances_ignore: Ignored, as FCOS.

        Returns:
            dict[str, Tensor]: ``loss_cls``, ``loss_bbox``,
            ``loss_centerness``, ``loss_mask`` (graph-connected 0 without
            positives) and, if configured, ``loss_saliency``.
        """
        losses = super().loss_by_feat(cls_scores, bbox_preds, centernesses,
                                      batch_gt_instances, batch_img_metas,
                                      batch_gt_instances_ignore)
        saliency = saliency_preds[0]
        input_shape = batch_img_metas[0]['batch_input_shape']
        grid_shape = tuple(saliency.shape[-2:])
        mask_targets = [
            masks_on_grid(
                gt.masks.to_tensor(torch.float32, saliency.device),
                grid_shape, input_shape) for gt in batch_gt_instances
        ]
        if self.loss_saliency is not None:
            labels = torch.cat([gt.labels for gt in batch_gt_instances])
            image_ids = torch.cat([
                torch.full_like(gt.labels, i)
                for i, gt in enumerate(batch_gt_instances)
            ])
            channels = saliency.shape[1]
            channel = labels if channels > 1 else torch.zeros_like(labels)
            union = union_per_channel(
                torch.cat(mask_targets), image_ids * channels + channel,
                saliency.shape[0] * channels).view(saliency.shape)
            losses['loss_saliency'] = self.loss_saliency(saliency, union)
        image_ids, shapes, gt_ids = self._positive_shapes(
            cls_scores, bbox_preds, shape_preds, batch_gt_instances)
        if len(gt_ids) == 0:
            losses['loss_mask'] = (sum(p.sum() for p in shape_preds) +
                                   saliency.sum()) * 0
            return losses
        offsets = torch.tensor([0] + [len(gt) for gt in batch_gt_instances
                                      ]).cumsum(0).to(gt_ids.device)
        flat_ids = offsets[image_ids] + gt_ids
        boxes = torch.cat([gt.bboxes for gt in batch_gt_instances])[flat_ids]
        labels = torch.cat([gt.labels for gt in batch_gt_instances])[flat_ids]
        scale = boxes.new_tensor([
            grid_shape[1] / input_shape[1], grid_shape[0] / input_shape[0]
        ]).repeat(2)
        saliencies = saliency[image_ids, self._saliency_channels(labels)]
        masks, inside = assemble_masks(
            shapes.float(), saliencies.float(),
            clamp_box_size(boxes * scale, self.min_box_size).float())
        per_instance = mask_bce_per_instance(masks, inside,
                                             torch.cat(mask_targets)[flat_ids])
        losses['loss_mask'] = self.loss_mask_weight * per_instance.mean()
        return losses

    def _saliency_channels(self, labels: Tensor) -> Tensor:
        """Saliency channel of each class label."""
        if self.saliency_type == 'class_specific':
            return labels
        return torch.zeros_like(labels)

    def _positive_shapes(
            self, cls_scores: List[Tensor], bbox_preds: List[Tensor],
            shape_preds: List[Tensor],
            batch_gt_instances: InstanceList) -> Tuple[Tensor, Tensor, Tensor]:
        """The FCOS positive locations: their image, shape logits and the
        index of the GT they are assigned to.

        FCOS's targets give each positive the distances (l, t, r, b) to its
        GT box; the box they span identifies the GT (the nearest GT box,
        exact up to float rounding).

        Returns:
            tuple[Tensor, Tensor, Tensor]: (P,) image indices, (P, S, S)
            shape logits, (P,) GT indices within their image.
        """
        featmap_sizes = [score.shape[-2:] for score in cls_scores]
        points = self.prior_generator.grid_priors(
            featmap_sizes,
            dtype=bbox_preds[0].dtype,
            device=bbox_preds[0].device)
        labels, bbox_targets = self.get_targets(points, batch_gt_instances)
        num_imgs = len(batch_gt_instances)
        image_ids, shapes, gt_ids = [], [], []
        for level, (level_labels, level_targets, level_points,
                    shape_pred) in enumerate(
                        zip(labels, bbox_targets, points, shape_preds)):
            positive = ((level_labels >= 0) &
                        (level_labels < self.num_classes)).view(num_imgs, -1)
            image_index, location = positive.nonzero(as_tuple=True)
            distances = level_targets.view(num_imgs, -1, 4)[image_index,
                                                            location]
            if self.norm_on_bbox:
                distances = distances * self.strides[level]
            centre = level_points[location]
            spanned = torch.cat(
                [centre - distances[:, :2], centre + distances[:, 2:]], 1)
            gt_index = spanned.new_zeros(len(spanned), dtype=torch.long)
            for i, gt in enumerate(batch_gt_instances):
                here = image_index == i
                if here.any():
                    gt_index[here] = torch.cdist(
                        spanned[here], gt.bboxes, p=1).argmin(dim=1)
            image_ids.append(image_index)
            gt_ids.append(gt_index)
            shapes.append(
                shape_pred.flatten(2)[image_index, :, location].view(
                    -1, self.shape_size, self.shape_size))
        return torch.cat(image_ids), torch.cat(shapes), torch.cat(gt_ids)

    def predict_by_feat(self,
                        cls_scores: List[Tensor],
                        bbox_preds: List[Tensor],
                        score_factors: List[Tensor],
                        shape_preds: List[Tensor],
                        saliency_preds: List[Tensor],
                        batch_img_metas: List[dict],
                        cfg: OptConfigType = None,
                        rescale: bool = False,
                        with_nms: bool = True) -> InstanceList:
        """FCOS detections (:class:`CenterMaskFCOSHead` post-processing)
        with masks.

        Args:
            cls_scores, bbox_preds, score_factors, shape_preds,
                saliency_preds: See :meth:`forward` (``score_factors`` are
                the centerness logits).
            batch_img_metas (list[dict]): ``batch_input_shape``,
                ``img_shape``, ``ori_shape``, ``scale_factor``.
            cfg (dict, optional): Post-processing config; ``test_cfg`` if
                None.
            rescale (bool): Boxes and masks in the original image.
            with_nms (bool): Apply NMS and the ``max_per_img`` cut.

        Returns:
            list[InstanceData]: Per image ``bboxes`` (K, 4), ``scores``
            (K,), ``labels`` (K,) and ``masks`` (K, h, w) bool, at
            ``ori_shape`` with ``rescale``, else at ``img_shape``.
        """
        cfg = copy.deepcopy(self.test_cfg if cfg is None else cfg)
        featmap_sizes = [score.shape[-2:] for score in cls_scores]
        priors = self.prior_generator.grid_priors(
            featmap_sizes,
            dtype=cls_scores[0].dtype,
            device=cls_scores[0].device)
        # A third prior column: the location's index over all levels.
        starts = [0] + [len(p) for p in priors[:-1]]
        starts = torch.tensor(starts).cumsum(0).tolist()
        tagged = [
            torch.cat([p, (start + torch.arange(len(p), device=p.device)
                           )[:, None].to(p.dtype)], 1)
            for p, start in zip(priors, starts)
        ]
        results_list = []
        for i, img_meta in enumerate(batch_img_metas):
            results = self._predict_by_feat_single(
                select_single_mlvl(cls_scores, i),
                select_single_mlvl(bbox_preds, i),
                select_single_mlvl(score_factors, i), tagged, img_meta, cfg,
                rescale=False, with_nms=with_nms)
            shape_logits = torch.cat(
                [pred[i].flatten(1) for pred in shape_preds], dim=1)
            results_list.append(
                self._add_masks(results, shape_logits, saliency_preds[0][i],
                                img_meta, cfg, rescale))
        return results_list

    def _predict_by_feat_single(self,
                                cls_score_list: List[Tensor],
                                bbox_pred_list: List[Tensor],
                                score_factor_list: List[Tensor],
                                mlvl_priors: List[Tensor],
                                img_meta: dict,
                                cfg: OptConfigType,
                                rescale: bool = False,
                                with_nms: bool = True) -> InstanceData:
        """:meth:`CenterMaskFCOSHead._predict_by_feat_single` that keeps,
        as ``locations`` (K,), the third column of ``mlvl_priors`` (the
        location index of :meth:`predict_by_feat`) of each detection."""
        cfg = copy.deepcopy(self.test_cfg if cfg is None else cfg)
        results, priors = self._select_candidates(cls_score_list,
                                                  bbox_pred_list,
                                                  score_factor_list,
                                                  mlvl_priors, img_meta, cfg)
        results.locations = priors[:, 2].long()
        return self._bbox_post_process(
            results=results,
            cfg=cfg,
            rescale=rescale,
            with_nms=with_nms,
            img_meta=img_meta)

    def _add_masks(self, results: InstanceData, shape_logits: Tensor,
                   saliency: Tensor, img_meta: dict, cfg: ConfigType,
                   rescale: bool) -> InstanceData:
        """Assemble the masks of one image's detections.

        Args:
            results (InstanceData): ``bboxes`` (K, 4) in network-input
                pixels, ``labels`` (K,), ``locations`` (K,).
            shape_logits (Tensor): (S^2, sum_l H_l * W_l) of the image.
            saliency (Tensor): (C or 1, H, W) saliency logits.
            img_meta (dict): ``batch_input_shape``, ``img_shape``,
                ``ori_shape``, ``scale_factor``.
            cfg (dict): ``mask_thr_binary``.
            rescale (bool): Boxes and masks in the original image.

        Returns:
            InstanceData: ``bboxes``, ``scores``, ``labels``, ``masks``.
        """
        input_h, input_w = img_meta['batch_input_shape']
        grid_h, grid_w = saliency.shape[-2:]
        scale = results.bboxes.new_tensor([grid_w / input_w,
                                           grid_h / input_h]).repeat(2)
        shapes = shape_logits[:, results.locations].t().reshape(
            -1, self.shape_size, self.shape_size)
        masks, _ = assemble_masks(
            shapes, saliency[self._saliency_channels(results.labels)],
            clamp_box_size(results.bboxes * scale, self.min_box_size))
        masks = resize_masks(masks, (input_h, input_w))
        img_h, img_w = img_meta['img_shape'][:2]
        masks = masks[:, :img_h, :img_w]
        bboxes = results.bboxes
        size = tuple(masks.shape[-2:])
        if rescale:
            bboxes = to_output_frame(bboxes, img_meta['scale_factor'])
            size = tuple(img_meta['ori_shape'][:2])
        return InstanceData(
            bboxes=bboxes,
            scores=results.scores,
            labels=results.labels,
            masks=binary_masks_of_size(masks, size,
                                       cfg.get('mask_thr_binary', 0.5)))
