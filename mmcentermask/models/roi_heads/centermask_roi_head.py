"""Mask-only RoI head of CenterMask: SAG-Mask + MaskIoU on FCOS detections.

Shape shorthand: ``n`` = number of RoIs (detections) in the batch, ``n_i`` =
of image i, ``C`` = FPN channels, ``S`` = RoI size (14), ``M`` = mask size
(28), ``K`` = number of classes, ``H x W`` = output canvas of an image.
"""
from typing import List, Optional, Tuple

import torch
from mmdet.models.roi_heads import MaskScoringRoIHead
from mmdet.models.task_modules.samplers import SamplingResult
from mmdet.models.utils import unpack_gt_instances
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.structures.bbox import bbox2roi
from mmdet.utils import ConfigType, InstanceList, OptConfigType, OptMultiConfig
from mmengine.structures import InstanceData
from torch import Tensor

from ..utils import (force_float32, output_canvas_shape,
                     postprocess_instances)


@MODELS.register_module()
class CenterMaskRoIHead(MaskScoringRoIHead):
    """RoI head of `CenterMask <https://arxiv.org/abs/1911.06667>`_: a mask
    branch (with MaskIoU scoring) and **no box head**.

    Its RoIs are the detections of the one-stage detector (FCOS): their
    boxes, labels and scores are the final ones; this head only adds masks
    and mask scores. :meth:`mask_branch` runs RoI pooling, the mask head and
    the MaskIoU head on given boxes; :func:`postprocess_instances` maps the
    results to the output frame.

    Training: the detections (plus the GT boxes, via the sampler's
    ``add_gt_as_proposals``) are matched to the GT with ``train_cfg.assigner``
    and sampled with ``train_cfg.sampler``; only the positives reach the mask
    and MaskIoU heads. The RoI extractor receives the image metas (the
    CenterMask level rule needs each image's ``img_shape``).

    Testing follows detectron2's ``detector_postprocess`` by default
    (``clip_boxes=True``): the 28x28 masks are predicted for the unclipped
    detection boxes, then the boxes are rescaled to the output canvas,
    clipped to it, empty boxes are dropped, and the masks are pasted into the
    **clipped** boxes. ``clip_boxes=False`` restores mmdet's behaviour
    (unclipped boxes, nothing dropped, masks pasted into the unclipped box).

    Args:
        mask_roi_extractor (:obj:`ConfigDict` or dict): RoI extractor; it
            must accept a ``batch_img_metas`` keyword (e.g.
            ``AdaptiveLevelRoIExtractor``).
        mask_head (:obj:`ConfigDict` or dict): Mask head (``SAGMaskHead``).
        mask_iou_head (:obj:`ConfigDict` or dict): MaskIoU head
            (``CenterMaskIoUHead``; its ``predict_by_feat`` must add
            ``mask_scores``).
        train_cfg (:obj:`ConfigDict` or dict, optional): ``assigner``,
            ``sampler``, ``mask_size`` and ``mask_thr_binary`` (logit
            threshold of the MaskIoU targets, 0 in CenterMask).
        test_cfg (:obj:`ConfigDict` or dict, optional): ``mask_thr_binary``
            (probability threshold of the pasted masks, 0.5) and
            ``label_channel_only`` (default True: the mask predictor
            computes only each detection's class, 1 of K output channels;
            False: every class, then the detection's, as centermask2 —
            the same logits up to float32 summation order).
        clip_boxes (bool): detectron2 test-time box clipping and mask pasting
            (see above). Defaults to True.
        init_cfg (:obj:`ConfigDict` or dict or list, optional): Defaults to
            None.
    """

    # tensor-mode ``forward`` (used for FLOPs counting) keeps this many RoIs
    max_forward_rois = 100

    def __init__(self,
                 mask_roi_extractor: ConfigType,
                 mask_head: ConfigType,
                 mask_iou_head: ConfigType,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 clip_boxes: bool = True,
                 init_cfg: OptMultiConfig = None) -> None:
        if mask_roi_extractor is None or mask_head is None:
            raise ValueError('CenterMaskRoIHead needs a mask_roi_extractor '
                             'and a mask_head')
        super().__init__(
            mask_iou_head=mask_iou_head,
            mask_roi_extractor=mask_roi_extractor,
            mask_head=mask_head,
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            init_cfg=init_cfg)
        self.clip_boxes = clip_boxes

    def mask_branch(self,
                    x: Tuple[Tensor],
                    rois: Tensor,
                    labels: Tensor,
                    batch_img_metas: Optional[List[dict]] = None,
                    all_classes: bool = True) -> dict:
        """Run the mask branch on given boxes: RoI pooling, mask head and
        MaskIoU head (fed the mask of ``labels``).

        The one entry of the mask branch, used by training, prediction,
        tensor mode and test-time augmentation.

        Args:
            x (tuple[Tensor]): FPN maps (B, C, H_l, W_l); the extractor uses
                the first ``num_inputs``.
            rois (Tensor): ``(batch_idx, x1, y1, x2, y2)`` in network-input
                pixels, shape (n, 5).
            labels (Tensor): Class of each RoI, (n, ): its mask logits feed
                the MaskIoU head.
            batch_img_metas (list[dict], optional): Passed to the extractor
                (the level rule needs each image's ``img_shape``).
            all_classes (bool): Predict the mask logits of every class
                (centermask2; training and tensor mode need them) or, with
                False, only of each RoI's class (see
                :meth:`SAGMaskHead.predict_label_logits`; mask heads without
                that method predict every class). Defaults to True.

        Returns:
            dict: ``mask_feats`` (n, C, S, S) pooled features,
            ``mask_preds`` (n, K, M, M) mask logits (None with
            ``all_classes=False``), ``label_mask_preds`` (n, M, M) the
            logits of each RoI's class and ``mask_iou_preds`` (n, K)
            predicted mask IoUs.
        """
        mask_feats = self.mask_roi_extractor(
            x[:self.mask_roi_extractor.num_inputs],
            rois,
            batch_img_metas=batch_img_metas)
        if all_classes or not hasattr(self.mask_head, 'predict_label_logits'):
            mask_preds = self.mask_head(mask_feats)
            mask_labels = (
                torch.zeros_like(labels)
                if self.mask_head.class_agnostic else labels)
            label_mask_preds = select_class(mask_preds, mask_labels)
        else:
            mask_preds = None
            label_mask_preds = self.mask_head.predict_label_logits(
                mask_feats, labels)
        mask_iou_preds = self.mask_iou_head(mask_feats, label_mask_preds)
        return dict(
            mask_feats=mask_feats,
            mask_preds=mask_preds,
            label_mask_preds=label_mask_preds,
            mask_iou_preds=mask_iou_preds)

    def forward(self,
                x: Tuple[Tensor],
                detections: InstanceList,
                batch_data_samples: SampleList = None) -> tuple:
        """Tensor-mode forward (no post-processing) of the first
        :attr:`max_forward_rois` detections of the batch.

        Args:
            x (tuple[Tensor]): FPN maps (B, C, H_l, W_l).
            detections (list[:obj:`InstanceData`]): Per image, ``bboxes``
                (n_i, 4) in network-input pixels and ``labels`` (n_i, ).
            batch_data_samples (list[:obj:`DetDataSample`], optional): Their
                metas feed the extractor (padded batch size otherwise).

        Returns:
            tuple[Tensor]: Mask logits (n', K, M, M) and MaskIoU (n', K),
            n' = min(n, max_forward_rois).
        """
        batch_img_metas = None
        if batch_data_samples is not None:
            batch_img_metas = [ds.metainfo for ds in batch_data_samples]
        rois = bbox2roi([det.bboxes for det in detections])
        labels = torch.cat([det.labels for det in detections])
        results = self.mask_branch(x, rois[:self.max_forward_rois],
                                   labels[:self.max_forward_rois],
                                   batch_img_metas)
        return results['mask_preds'], results['mask_iou_preds']

    def loss(self, x: Tuple[Tensor], detections: InstanceList,
             batch_data_samples: SampleList) -> dict:
        """Mask and MaskIoU losses on the positive detections.

        Args:
            x (tuple[Tensor]): FPN maps (B, C, H_l, W_l).
            detections (list[:obj:`InstanceData`]): Per image, the training
                FCOS detections: ``bboxes`` (n_i, 4) in network-input pixels
                (not modified).
            batch_data_samples (list[:obj:`DetDataSample`]): With
                ``gt_instances`` (``bboxes``, ``labels``, ``masks``) and
                metas.

        Returns:
            dict[str, Tensor]: ``loss_mask`` and ``loss_mask_iou``; both are
            graph-connected zeros when the batch has no positive.
        """
        if len(detections) != len(batch_data_samples):
            raise ValueError(
                f'one detection list per image expected, got '
                f'{len(detections)} lists for {len(batch_data_samples)} '
                'images')
        batch_gt_instances, batch_gt_instances_ignore, batch_img_metas = \
            unpack_gt_instances(batch_data_samples)
        sampling_results = [
            self._sample(x, i, dets, gt, gt_ignore)
            for i, (dets, gt, gt_ignore) in enumerate(
                zip(detections, batch_gt_instances,
                    batch_gt_instances_ignore))
        ]
        mask_results = self.mask_loss(x, sampling_results, None,
                                      batch_gt_instances, batch_img_metas)
        return mask_results['loss_mask']

    def _sample(self, x: Tuple[Tensor], img_id: int, detections: InstanceData,
                gt_instances: InstanceData,
                gt_instances_ignore: Optional[InstanceData]) -> SamplingResult:
        """Assign and sample the detections of one image (as boxes only: no
        gradient flows into them)."""
        priors = InstanceData(priors=detections.bboxes.detach())
        assign_result = self.bbox_assigner.assign(priors, gt_instances,
                                                  gt_instances_ignore)
        return self.bbox_sampler.sample(
            assign_result,
            priors,
            gt_instances,
            feats=[lvl_feat[img_id][None] for lvl_feat in x])

    def mask_loss(self,
                  x: Tuple[Tensor],
                  sampling_results: List[SamplingResult],
                  bbox_feats: Optional[Tensor],
                  batch_gt_instances: InstanceList,
                  batch_img_metas: Optional[List[dict]] = None) -> dict:
        """Mask branch on the positive RoIs, mask and MaskIoU losses.

        Args:
            x (tuple[Tensor]): FPN maps (B, C, H_l, W_l).
            sampling_results (list[:obj:`SamplingResult`]): Per image.
            bbox_feats (None): Unused (there is no box head); kept for the
                signature of :meth:`StandardRoIHead.mask_loss`.
            batch_gt_instances (list[:obj:`InstanceData`]): Per image.
            batch_img_metas (list[dict], optional): Passed to the extractor.

        Returns:
            dict: The :meth:`mask_branch` outputs plus ``mask_targets``
            (n, M, M) and ``loss_mask`` = dict(loss_mask, loss_mask_iou).
        """
        pos_rois = bbox2roi([res.pos_priors for res in sampling_results])
        pos_labels = torch.cat([res.pos_gt_labels for res in sampling_results])
        mask_results = self.mask_branch(x, pos_rois, pos_labels,
                                        batch_img_metas)
        mask_loss_and_target = self.mask_head.loss_and_target(
            mask_preds=mask_results['mask_preds'],
            sampling_results=sampling_results,
            batch_gt_instances=batch_gt_instances,
            rcnn_train_cfg=self.train_cfg)
        mask_targets = mask_loss_and_target['mask_targets']
        loss_mask_iou = self.mask_iou_head.loss_and_target(
            select_class(mask_results['mask_iou_preds'], pos_labels),
            select_class(mask_results['mask_preds'], pos_labels),
            mask_targets, sampling_results, batch_gt_instances,
            self.train_cfg)
        mask_results.update(
            mask_targets=mask_targets,
            loss_mask=dict(**mask_loss_and_target['loss_mask'],
                           **loss_mask_iou))
        return mask_results

    def predict(self,
                x: Tuple[Tensor],
                detections: InstanceList,
                batch_data_samples: SampleList,
                rescale: bool = False) -> InstanceList:
        """Add masks and mask scores to the detections.

        Args:
            x (tuple[Tensor]): FPN maps (B, C, H_l, W_l).
            detections (list[:obj:`InstanceData`]): Per image, the final
                FCOS detections: ``bboxes`` (n_i, 4) in network-input
                pixels, ``scores`` (n_i, ), ``labels`` (n_i, ). Not modified.
            batch_data_samples (list[:obj:`DetDataSample`]): For the metas.
            rescale (bool): Return boxes and masks in the original image
                frame (``ori_shape``); otherwise in the network-input frame.
                Defaults to False.

        Returns:
            list[:obj:`InstanceData`]: See :meth:`predict_mask`.
        """
        batch_img_metas = [ds.metainfo for ds in batch_data_samples]
        return self.predict_mask(
            x, batch_img_metas, detections, rescale=rescale)

    def predict_mask(self,
                     x: Tuple[Tensor],
                     batch_img_metas: List[dict],
                     detections: InstanceList,
                     rescale: bool = False) -> InstanceList:
        """Predict, score and paste the masks of the detections.

        Args:
            x (tuple[Tensor]): FPN maps (B, C, H_l, W_l).
            batch_img_metas (list[dict]): Per image, ``img_shape``,
                ``ori_shape`` and ``scale_factor`` (w, h).
            detections (list[:obj:`InstanceData`]): Per image, ``bboxes``,
                ``scores``, ``labels``. Not modified.
            rescale (bool): See :meth:`predict`.

        Returns:
            list[:obj:`InstanceData`]: Per image (other input fields kept):

            - bboxes (Tensor): (n_i, 4), output frame, clipped to it when
              ``clip_boxes``.
            - scores (Tensor): (n_i, ), the input box scores, unchanged.
            - labels (Tensor): (n_i, ).
            - masks (Tensor): (n_i, H, W) bool (``test_cfg.mask_thr_binary``
              on the probabilities).
            - mask_scores (Tensor): (n_i, ), ``scores * maskiou[label]``.

            H x W is ``ori_shape`` when ``rescale``, else ``ori_shape *
            scale_factor`` rounded. With ``clip_boxes`` empty boxes are
            dropped, so n_i can be smaller than the input.
        """
        mask_probs, mask_ious = self.mask_probabilities(
            x, batch_img_metas, detections)
        return self.postprocess(detections, mask_probs, mask_ious,
                                batch_img_metas, rescale)

    def mask_probabilities(self, x: Tuple[Tensor], batch_img_metas: List[dict],
                           detections: InstanceList) -> Tuple[Tensor, Tensor]:
        """The mask branch on the detections, each reduced to its class:
        mask probabilities and predicted mask IoU, before pasting.

        Args:
            x (tuple[Tensor]): FPN maps (B, C, H_l, W_l).
            batch_img_metas (list[dict]): Per image, ``img_shape``.
            detections (list[:obj:`InstanceData`]): Per image, ``bboxes``
                (n_i, 4) in network-input pixels and ``labels`` (n_i, ).

        Returns:
            tuple[Tensor, Tensor]: Mask probabilities (n, M, M) and mask
            IoUs (n, ), all images concatenated.
        """
        rois = bbox2roi([dets.bboxes for dets in detections])
        labels = torch.cat([dets.labels for dets in detections])
        results = self.mask_branch(
            x,
            rois,
            labels,
            batch_img_metas,
            all_classes=not self.test_cfg.get('label_channel_only', True))
        return (results['label_mask_preds'].sigmoid(),
                select_class(results['mask_iou_preds'], labels))

    @force_float32
    def postprocess(self,
                    detections: InstanceList,
                    mask_probs: Tensor,
                    mask_ious: Tensor,
                    batch_img_metas: List[dict],
                    rescale: bool,
                    boxes_on_canvas: bool = False) -> InstanceList:
        """Final instances of the batch (see
        :func:`~mmcentermask.models.utils.postprocess_instances`), in
        float32 with autocast off (mask pasting under mixed precision).

        Args:
            detections (list[:obj:`InstanceData`]): Per image, ``bboxes``
                (n_i, 4), ``scores``, ``labels``.
            mask_probs (Tensor): Mask probabilities of each detection's
                class, all images concatenated, (n, M, M).
            mask_ious (Tensor): Predicted mask IoU of each detection's class,
                (n, ).
            batch_img_metas (list[dict]): Per image, ``ori_shape`` and
                ``scale_factor``.
            rescale (bool): See :meth:`predict`.
            boxes_on_canvas (bool): The boxes are in the output frame already
                (test-time augmentation merges them there); otherwise they
                are network-input pixels. Defaults to False.

        Returns:
            list[:obj:`InstanceData`]: See :meth:`predict_mask`.
        """
        num_per_img = [len(dets) for dets in detections]
        results = []
        for dets, probs, ious, img_meta in zip(detections,
                                               mask_probs.split(num_per_img),
                                               mask_ious.split(num_per_img),
                                               batch_img_metas):
            to_original = rescale and not boxes_on_canvas
            results.append(
                postprocess_instances(
                    dets,
                    probs,
                    dets.scores * ious,
                    output_canvas_shape(img_meta, rescale),
                    img_meta['scale_factor'] if to_original else None,
                    clip_boxes=self.clip_boxes,
                    mask_thr_binary=self.test_cfg.mask_thr_binary))
        return results


def select_class(preds: Tensor, labels: Tensor) -> Tensor:
    """The channel of each RoI's class.

    Args:
        preds (Tensor): Per-class predictions (n, K, ...).
        labels (Tensor): Class of each RoI, (n, ).

    Returns:
        Tensor: ``preds[i, labels[i]]`` for every i, shape (n, ...).
    """
    return preds[torch.arange(len(labels), device=labels.device), labels]
