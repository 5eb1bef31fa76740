"""Mask-only RoI head of CenterMask: SAG-Mask + MaskIoU on FCOS detections.

Shape shorthand: ``n`` = number of RoIs (detections) in the batch, ``n_i`` =
of image i, ``C`` = FPN channels, ``S`` = RoI size (14), ``M`` = mask size
(28), ``K`` = number of classes, ``H x W`` = output canvas of an image.
"""
from typing import List, Optional, Sequence, Tuple

import numpy as np
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


@MODELS.register_module()
class CenterMaskRoIHead(MaskScoringRoIHead):
    """RoI head of `CenterMask <https://arxiv.org/abs/1911.06667>`_: a mask
    branch (with MaskIoU scoring) and **no box head**.

    The "proposals" are the final detections of the one-stage detector
    (FCOS): their boxes, labels and scores are the final ones; this head only
    adds masks and mask scores.

    Training: proposals (plus the GT boxes, via the sampler's
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
            (probability threshold of the pasted masks, 0.5).
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

    def _mask_forward(self,
                      x: Tuple[Tensor],
                      rois: Tensor,
                      batch_img_metas: Optional[List[dict]] = None) -> dict:
        """Pool the RoIs and run the mask head.

        Args:
            x (tuple[Tensor]): FPN maps (B, C, H_l, W_l); the extractor uses
                the first ``num_inputs``.
            rois (Tensor): ``(batch_idx, x1, y1, x2, y2)``, shape (n, 5).
            batch_img_metas (list[dict], optional): Passed to the extractor.

        Returns:
            dict: ``mask_preds`` (n, K, M, M) logits and ``mask_feats``
            (n, C, S, S) pooled features.
        """
        mask_feats = self.mask_roi_extractor(
            x[:self.mask_roi_extractor.num_inputs],
            rois,
            batch_img_metas=batch_img_metas)
        return dict(
            mask_preds=self.mask_head(mask_feats), mask_feats=mask_feats)

    def _mask_iou_forward(self, mask_results: dict, labels: Tensor) -> Tensor:
        """MaskIoU of every RoI for every class.

        Args:
            mask_results (dict): Output of :meth:`_mask_forward`.
            labels (Tensor): Class whose mask logits feed the head, (n, ).

        Returns:
            Tensor: Predicted IoUs, shape (n, K).
        """
        mask_preds = mask_results['mask_preds']
        return self.mask_iou_head(
            mask_results['mask_feats'],
            mask_preds[torch.arange(len(labels), device=labels.device),
                       labels])

    def forward(self,
                x: Tuple[Tensor],
                rpn_results_list: InstanceList,
                batch_data_samples: SampleList = None) -> tuple:
        """Tensor-mode forward (no post-processing) of the first
        :attr:`max_forward_rois` detections of the batch.

        Args:
            x (tuple[Tensor]): FPN maps (B, C, H_l, W_l).
            rpn_results_list (list[:obj:`InstanceData`]): Per image,
                ``bboxes`` (n_i, 4) in network-input pixels and ``labels``
                (n_i, ).
            batch_data_samples (list[:obj:`DetDataSample`], optional): Their
                metas feed the extractor (padded batch size otherwise).

        Returns:
            tuple[Tensor]: Mask logits (n', K, M, M) and MaskIoU (n', K),
            n' = min(n, max_forward_rois).
        """
        batch_img_metas = None
        if batch_data_samples is not None:
            batch_img_metas = [ds.metainfo for ds in batch_data_samples]
        rois = bbox2roi([res.bboxes for res in rpn_results_list])
        labels = torch.cat([res.labels for res in rpn_results_list])
        mask_results = self._mask_forward(x, rois[:self.max_forward_rois],
                                          batch_img_metas)
        mask_iou_preds = self._mask_iou_forward(mask_results,
                                                labels[:self.max_forward_rois])
        return mask_results['mask_preds'], mask_iou_preds

    def loss(self, x: Tuple[Tensor], rpn_results_list: InstanceList,
             batch_data_samples: SampleList) -> dict:
        """Mask and MaskIoU losses on the positive proposals.

        Args:
            x (tuple[Tensor]): FPN maps (B, C, H_l, W_l).
            rpn_results_list (list[:obj:`InstanceData`]): Per image,
                ``bboxes`` (n_i, 4) in network-input pixels (not modified).
            batch_data_samples (list[:obj:`DetDataSample`]): With
                ``gt_instances`` (``bboxes``, ``labels``, ``masks``) and
                metas.

        Returns:
            dict[str, Tensor]: ``loss_mask`` and ``loss_mask_iou``; both are
            graph-connected zeros when the batch has no positive.
        """
        if len(rpn_results_list) != len(batch_data_samples):
            raise ValueError('one proposal list per image expected')
        batch_gt_instances, batch_gt_instances_ignore, batch_img_metas = \
            unpack_gt_instances(batch_data_samples)
        sampling_results = [
            self._sample(x, i, res, gt, gt_ignore)
            for i, (res, gt, gt_ignore) in enumerate(
                zip(rpn_results_list, batch_gt_instances,
                    batch_gt_instances_ignore))
        ]
        mask_results = self.mask_loss(x, sampling_results, None,
                                      batch_gt_instances, batch_img_metas)
        return mask_results['loss_mask']

    def _sample(self, x: Tuple[Tensor], img_id: int, rpn_results: InstanceData,
                gt_instances: InstanceData,
                gt_instances_ignore: Optional[InstanceData]) -> SamplingResult:
        """Assign and sample the proposals of one image (as boxes only: no
        gradient flows into them)."""
        priors = InstanceData(priors=rpn_results.bboxes.detach())
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
        """Mask forward on the positive RoIs, mask and MaskIoU losses.

        Args:
            x (tuple[Tensor]): FPN maps (B, C, H_l, W_l).
            sampling_results (list[:obj:`SamplingResult`]): Per image.
            bbox_feats (None): Unused (there is no box head); kept for the
                signature of :meth:`StandardRoIHead.mask_loss`.
            batch_gt_instances (list[:obj:`InstanceData`]): Per image.
            batch_img_metas (list[dict], optional): Passed to the extractor.

        Returns:
            dict: ``mask_preds``, ``mask_feats``, ``mask_targets`` and
            ``loss_mask`` = dict(loss_mask, loss_mask_iou).
        """
        pos_rois = bbox2roi([res.pos_priors for res in sampling_results])
        mask_results = self._mask_forward(x, pos_rois, batch_img_metas)
        mask_loss_and_target = self.mask_head.loss_and_target(
            mask_preds=mask_results['mask_preds'],
            sampling_results=sampling_results,
            batch_gt_instances=batch_gt_instances,
            rcnn_train_cfg=self.train_cfg)
        mask_targets = mask_loss_and_target['mask_targets']

        pos_labels = torch.cat([res.pos_gt_labels for res in sampling_results])
        mask_iou_preds = self._mask_iou_forward(mask_results, pos_labels)
        pos_mask_preds = mask_results['mask_preds'][
            torch.arange(len(pos_labels), device=pos_labels.device),
            pos_labels]
        pos_mask_iou_preds = mask_iou_preds[
            torch.arange(len(pos_labels), device=pos_labels.device),
            pos_labels]
        loss_mask_iou = self.mask_iou_head.loss_and_target(
            pos_mask_iou_preds, pos_mask_preds, mask_targets, sampling_results,
            batch_gt_instances, self.train_cfg)

        mask_results.update(
            mask_targets=mask_targets,
            loss_mask=dict(**mask_loss_and_target['loss_mask'],
                           **loss_mask_iou))
        return mask_results

    def predict(self,
                x: Tuple[Tensor],
                rpn_results_list: InstanceList,
                batch_data_samples: SampleList,
                rescale: bool = False) -> InstanceList:
        """Add masks and mask scores to the detections.

        Args:
            x (tuple[Tensor]): FPN maps (B, C, H_l, W_l).
            rpn_results_list (list[:obj:`InstanceData`]): Per image, the
                final detections: ``bboxes`` (n_i, 4) in network-input
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
            x, batch_img_metas, rpn_results_list, rescale=rescale)

    def predict_mask(self,
                     x: Tuple[Tensor],
                     batch_img_metas: List[dict],
                     results_list: InstanceList,
                     rescale: bool = False) -> InstanceList:
        """Predict, score and paste the masks of the detections.

        Args:
            x (tuple[Tensor]): FPN maps (B, C, H_l, W_l).
            batch_img_metas (list[dict]): Per image, ``img_shape``,
                ``ori_shape`` and ``scale_factor`` (w, h).
            results_list (list[:obj:`InstanceData`]): Per image, ``bboxes``,
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
        mask_rois = bbox2roi([res.bboxes for res in results_list])
        labels = torch.cat([res.labels for res in results_list])
        mask_results = self._mask_forward(x, mask_rois, batch_img_metas)
        mask_iou_preds = self._mask_iou_forward(mask_results, labels)
        num_per_img = [len(res) for res in results_list]
        return self.paste_and_score(
            results_list, mask_results['mask_preds'].split(num_per_img),
            mask_iou_preds.split(num_per_img), batch_img_metas, rescale)

    def paste_and_score(self,
                        results_list: InstanceList,
                        mask_preds: Sequence[Tensor],
                        mask_iou_preds: Sequence[Tensor],
                        batch_img_metas: List[dict],
                        rescale: bool = False,
                        activate_map: bool = False) -> InstanceList:
        """Final instances from per-image mask and MaskIoU predictions.

        Args:
            results_list (list[:obj:`InstanceData`]): Per image, ``bboxes``
                (n_i, 4) in network-input pixels, ``scores``, ``labels``.
                Not modified.
            mask_preds (Sequence[Tensor]): Per image, (n_i, K, M, M) mask
                logits, or probabilities when ``activate_map``.
            mask_iou_preds (Sequence[Tensor]): Per image, (n_i, K) MaskIoU.
            batch_img_metas (list[dict]): Per image, ``ori_shape`` and
                ``scale_factor`` (w, h).
            rescale (bool): See :meth:`predict`.
            activate_map (bool): ``mask_preds`` are probabilities already
                (test-time augmentation averages them).

        Returns:
            list[:obj:`InstanceData`]: See :meth:`predict_mask`.
        """
        final_list, kept_mask_preds, kept_iou_preds, paste_metas = \
            [], [], [], []
        for results, img_meta, img_mask_preds, iou_preds in zip(
                results_list, batch_img_metas, mask_preds, mask_iou_preds):
            final, keep, paste_meta = self._final_instances(
                results, img_meta, rescale)
            final_list.append(final)
            kept_mask_preds.append(img_mask_preds[keep])
            kept_iou_preds.append(iou_preds[keep])
            paste_metas.append(paste_meta)
        final_list = self.mask_head.predict_by_feat(
            mask_preds=tuple(kept_mask_preds),
            results_list=final_list,
            batch_img_metas=paste_metas,
            rcnn_test_cfg=self.test_cfg,
            rescale=False,
            activate_map=activate_map)
        return self.mask_iou_head.predict_by_feat(
            mask_iou_preds=tuple(kept_iou_preds), results_list=final_list)

    def _final_instances(self, results: InstanceData, img_meta: dict,
                         rescale: bool) -> Tuple[InstanceData, Tensor, dict]:
        """Detections of one image in the output frame.

        Args:
            results (:obj:`InstanceData`): Detections, ``bboxes`` (n_i, 4)
                in network-input pixels. Not modified.
            img_meta (dict): Image metas.
            rescale (bool): See :meth:`predict`.

        Returns:
            tuple: The kept detections with output-frame ``bboxes``, the
            keep mask (n_i, ) and the metas that make ``FCNMaskHead`` paste
            into these boxes on the output canvas (scale factor 1).
        """
        canvas_hw = self._output_shape(img_meta, rescale)
        bboxes = self._output_boxes(results.bboxes, img_meta, rescale)
        keep = bboxes.new_ones(len(bboxes), dtype=torch.bool)
        if self.clip_boxes:
            bboxes, keep = self._clip_boxes(bboxes, canvas_hw)
        final = results[keep]
        final.bboxes = bboxes[keep]
        return final, keep, dict(ori_shape=canvas_hw, scale_factor=(1., 1.))

    @staticmethod
    def _output_shape(img_meta: dict, rescale: bool) -> Tuple[int, int]:
        """Output canvas (H, W): ``ori_shape`` when rescaling, else the
        original size times ``scale_factor``, rounded (as mmdet)."""
        ori_h, ori_w = img_meta['ori_shape'][:2]
        if rescale:
            return int(ori_h), int(ori_w)
        scale_w, scale_h = img_meta['scale_factor'][:2]
        return int(np.round(ori_h * scale_h)), int(np.round(ori_w * scale_w))

    @staticmethod
    def _output_boxes(bboxes: Tensor, img_meta: dict, rescale: bool) -> Tensor:
        """Boxes (n_i, 4) in the output frame, a new tensor.

        Rescaling multiplies by ``1 / scale_factor`` (w, h) rounded to the
        box dtype, as detectron2 multiplies by original / resized size
        (bit-identical to centermask2; mmdet divides by ``scale_factor``,
        which differs by one float ulp).
        """
        if not rescale:
            return bboxes.clone()
        scale_w, scale_h = img_meta['scale_factor'][:2]
        return bboxes * bboxes.new_tensor(
            [1 / scale_w, 1 / scale_h, 1 / scale_w, 1 / scale_h])

    @staticmethod
    def _clip_boxes(bboxes: Tensor,
                    canvas_hw: Tuple[int, int]) -> Tuple[Tensor, Tensor]:
        """Clip boxes (n_i, 4) to [0, W] x [0, H] and flag the non-empty ones
        (width and height > 0), as detectron2 ``detector_postprocess``.

        Returns:
            tuple[Tensor, Tensor]: Clipped boxes (n_i, 4), keep mask (n_i, ).
        """
        height, width = canvas_hw
        max_xy = bboxes.new_tensor([width, height, width, height])
        bboxes = torch.minimum(bboxes.clamp(min=0), max_xy)
        keep = (bboxes[:, 2] > bboxes[:, 0]) & (bboxes[:, 3] > bboxes[:, 1])
        return bboxes, keep
