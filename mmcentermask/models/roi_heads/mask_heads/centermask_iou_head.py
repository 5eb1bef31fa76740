"""MaskIoU head of CenterMask with centermask2's targets and init.

Shape shorthand: ``n`` = number of RoIs, ``p`` = positive RoIs of one image,
``C`` = RoI feature channels, ``S`` = RoI feature size (14), ``M`` = mask size
(28), ``K`` = number of classes.
"""
from typing import List, Sequence, Tuple

import numpy as np
import pycocotools.mask as mask_utils
import torch
from mmdet.models.roi_heads.mask_heads import MaskIoUHead
from mmdet.models.task_modules.samplers import SamplingResult
from mmdet.registry import MODELS
from mmdet.structures.mask import BaseInstanceMasks, PolygonMasks
from mmdet.utils import InstanceList, MultiConfig
from mmengine.config import ConfigDict
from torch import Tensor

from ...utils import force_float32

# centermask2 floors the area ratio at this value before dividing by it
MIN_AREA_RATIO = 1e-10


def _polygon_area_in_box(polygons: Sequence[np.ndarray],
                         box: np.ndarray) -> float:
    """Area of ``polygons`` rasterised on a box-sized grid, as centermask2.

    The polygons are translated to the box origin and rasterised by
    pycocotools on a ``int(h) x int(w)`` grid (box sides truncated), so
    everything outside the box is cut. Per-polygon areas are summed.

    Args:
        polygons (Sequence[ndarray]): Polygons ``[x0, y0, x1, y1, ...]`` of
            one instance, in pixels.
        box (ndarray): ``(x1, y1, x2, y2)`` in pixels, float32.

    Returns:
        float: Area in pixels.
    """
    width, height = int(box[2] - box[0]), int(box[3] - box[1])
    polygons = [p for p in polygons if len(p) >= 6]
    if width <= 0 or height <= 0 or not polygons:
        return 0.
    shifted = []
    for polygon in polygons:
        polygon = np.array(polygon, dtype=np.float64)
        polygon[0::2] -= box[0]
        polygon[1::2] -= box[1]
        shifted.append(polygon)
    rles = mask_utils.frPyObjects(shifted, height, width)
    return float(mask_utils.area(rles).sum())


def polygon_area_ratio(boxes: np.ndarray, gt_inds: np.ndarray,
                       gt_masks: PolygonMasks) -> np.ndarray:
    """Fraction of each GT instance's area that lies inside its RoI.

    centermask2's ratio: (rasterised area of the GT polygons inside the RoI,
    see :func:`_polygon_area_in_box`) / (analytic shoelace area of all the
    instance's polygons), clipped to [0, 1]. Instances of zero analytic area
    get ratio 0.

    Args:
        boxes (ndarray): Positive RoIs in pixels, shape (p, 4), float32.
        gt_inds (ndarray): Index of each RoI's GT instance, shape (p, ).
        gt_masks (:obj:`PolygonMasks`): GT masks of the image.

    Returns:
        ndarray: Ratios in [0, 1], shape (p, ), float64.
    """
    full_areas = np.asarray(gt_masks.areas, dtype=np.float64)[gt_inds]
    in_box = [
        _polygon_area_in_box(gt_masks.masks[ind], box)
        for box, ind in zip(boxes, gt_inds)
    ]
    in_box = np.array(in_box, dtype=np.float64)
    ratios = np.divide(
        in_box, full_areas, out=np.zeros_like(in_box), where=full_areas > 0)
    return np.clip(ratios, 0., 1.)


def mask_iou_targets(mask_preds: Tensor,
                     mask_targets: Tensor,
                     area_ratios: Tensor,
                     mask_thr: float = 0.) -> Tensor:
    """IoU between the thresholded predicted mask and the whole GT instance.

    centermask2 formula, in float64: ``I = sum(pred & gt28)``,
    ``full = sum(gt28) / max(ratio, 1e-10)`` (the GT area extrapolated to the
    whole instance in RoI-grid units), ``U = max(sum(pred) + full - I, 1)``,
    target ``I / U``.

    Args:
        mask_preds (Tensor): Mask logits of the GT class, shape (n, M, M).
        mask_targets (Tensor): Targets in {0, 1}, shape (n, M, M).
        area_ratios (Tensor): See :func:`polygon_area_ratio`, shape (n, ).
        mask_thr (float): Logit threshold of the predicted mask.
            Defaults to 0 (probability 0.5), as centermask2.

    Returns:
        Tensor: Targets in [0, 1], shape (n, ), float64.
    """
    pred = (mask_preds > mask_thr).double()
    target = mask_targets.double()
    overlap = (pred * target).sum((-1, -2))
    full = target.sum(
        (-1, -2)) / area_ratios.double().clamp(min=MIN_AREA_RATIO)
    union = (pred.sum((-1, -2)) + full - overlap).clamp(min=1.)
    return overlap / union


@MODELS.register_module()
class CenterMaskIoUHead(MaskIoUHead):
    """MaskIoU head (`Mask Scoring R-CNN <https://arxiv.org/abs/1903.00241>`_)
    as used by `CenterMask <https://arxiv.org/abs/1911.06667>`_.

    Same layout as :class:`mmdet.models.MaskIoUHead` (centermask2 names in
    brackets): input = cat(RoI features (n, C, S, S), 2x2-max-pooled sigmoid
    of the GT / predicted class mask logits (n, 1, S, S)) -> ``convs``
    (``maskiou_fcn1..N``, 3x3 + ReLU, the last one stride 2) -> ``fcs``
    (``maskiou_fc1/2`` + ReLU) -> ``fc_mask_iou`` (``maskiou``, one IoU per
    class). Differences from the mmdet head:

    - init as centermask2: kaiming_normal (fan_out, ReLU) and zero bias for
      convs and fcs, N(0, 0.01) and zero bias for ``fc_mask_iou``;
    - training targets as centermask2 (:func:`polygon_area_ratio`,
      :func:`mask_iou_targets`). For bitmap GT masks (centermask2 crashes)
      the area ratio falls back to mmdet's bitmap crop of the RoI rounded to
      integers, then the same formula applies;
    - :meth:`predict_by_feat` writes ``mask_scores`` and leaves the box
      ``scores`` unchanged.

    Args:
        init_cfg (dict or list[dict]): Defaults to centermask2's init.
        **kwargs: :class:`MaskIoUHead` arguments, with its defaults:
            ``num_convs`` (4), ``num_fcs`` (2), ``roi_feat_size`` (S, 14),
            ``in_channels`` (C, 256), ``conv_out_channels`` (256),
            ``fc_out_channels`` (1024), ``num_classes`` (K, 80),
            ``loss_iou`` (``MSELoss(loss_weight=0.5)`` = centermask2's
            ``0.5 * (pred - target)^2`` averaged over the targets > 0).
    """

    def __init__(
        self,
        init_cfg: MultiConfig = [
            dict(
                type='Kaiming',
                layer=['Conv2d', 'Linear'],
                mode='fan_out',
                nonlinearity='relu',
                distribution='normal',
                bias=0),
            dict(
                type='Normal',
                std=0.01,
                bias=0,
                override=dict(name='fc_mask_iou'))
        ],
        **kwargs
    ) -> None:
        super().__init__(init_cfg=init_cfg, **kwargs)

    @force_float32
    def loss_and_target(self, mask_iou_pred: Tensor, mask_preds: Tensor,
                        mask_targets: Tensor,
                        sampling_results: List[SamplingResult],
                        batch_gt_instances: InstanceList,
                        rcnn_train_cfg: ConfigDict) -> dict:
        """:meth:`MaskIoUHead.loss_and_target` in float32 with autocast off,
        so that ``--amp`` training computes the MaskIoU targets and the MSE
        loss on float32 predictions.

        Args:
            mask_iou_pred (Tensor): Predicted IoU of the GT class, shape (n, ).
            mask_preds (Tensor): GT-class mask logits, shape (n, M, M).
            mask_targets (Tensor): Mask targets, shape (n, M, M).
            sampling_results (list[:obj:`SamplingResult`]): Per image.
            batch_gt_instances (list[:obj:`InstanceData`]): Per image.
            rcnn_train_cfg (:obj:`ConfigDict`): See :meth:`get_targets`.

        Returns:
            dict: ``loss_mask_iou``, a float32 scalar.
        """
        return super().loss_and_target(mask_iou_pred, mask_preds,
                                       mask_targets, sampling_results,
                                       batch_gt_instances, rcnn_train_cfg)

    def get_targets(self, sampling_results: List[SamplingResult],
                    batch_gt_instances: InstanceList, mask_preds: Tensor,
                    mask_targets: Tensor,
                    rcnn_train_cfg: ConfigDict) -> Tensor:
        """MaskIoU targets of all positive RoIs of the batch.

        Args:
            sampling_results (list[:obj:`SamplingResult`]): Per image.
            batch_gt_instances (list[:obj:`InstanceData`]): Per image, with
                ``masks`` in the network-input frame.
            mask_preds (Tensor): GT-class mask logits, shape (n, M, M).
            mask_targets (Tensor): Mask targets, shape (n, M, M).
            rcnn_train_cfg (:obj:`ConfigDict`): ``mask_thr_binary`` is the
                logit threshold of the predicted mask (0 in CenterMask).

        Returns:
            Tensor: Targets (computed in float64), shape (n, ), in the dtype
            of ``mask_preds``.
        """
        area_ratios = torch.cat([
            self._get_area_ratio(res.pos_priors, res.pos_assigned_gt_inds,
                                 gt.masks)
            for res, gt in zip(sampling_results, batch_gt_instances)
        ]).to(mask_preds.device)
        targets = mask_iou_targets(mask_preds, mask_targets, area_ratios,
                                   rcnn_train_cfg.get('mask_thr_binary', 0.))
        return targets.to(mask_preds.dtype)

    def _get_area_ratio(self, pos_proposals: Tensor,
                        pos_assigned_gt_inds: Tensor,
                        gt_masks: BaseInstanceMasks) -> Tensor:
        """Fraction of each GT instance inside its RoI.

        Args:
            pos_proposals (Tensor): Positive RoIs in pixels, shape (p, 4).
            pos_assigned_gt_inds (Tensor): GT index per RoI, shape (p, ).
            gt_masks (:obj:`BaseInstanceMasks`): GT masks of the image;
                polygons use centermask2's ratio, bitmaps mmdet's.

        Returns:
            Tensor: Ratios, shape (p, ), float64, on CPU.
        """
        if not isinstance(gt_masks, PolygonMasks):
            return super()._get_area_ratio(pos_proposals, pos_assigned_gt_inds,
                                           gt_masks).double().cpu()
        ratios = polygon_area_ratio(pos_proposals.detach().cpu().numpy(),
                                    pos_assigned_gt_inds.cpu().numpy(),
                                    gt_masks)
        return torch.from_numpy(ratios)

    def predict_by_feat(self, mask_iou_preds: Tuple[Tensor],
                        results_list: InstanceList) -> InstanceList:
        """Add ``mask_scores = scores * maskiou[label]`` to each result.

        The predicted IoU is not clamped (centermask2). Box ``scores`` are
        left unchanged (mmdet's MaskIoUHead overwrites them).

        Args:
            mask_iou_preds (tuple[Tensor]): Per image, shape (n_i, K).
            results_list (list[:obj:`InstanceData`]): Per image, with
                ``scores`` (n_i, ) and ``labels`` (n_i, ).

        Returns:
            list[:obj:`InstanceData`]: ``results_list`` with ``mask_scores``
            (n_i, ) added in place.
        """
        if len(mask_iou_preds) != len(results_list):
            raise ValueError('one MaskIoU prediction per image expected')
        for results, mask_iou_pred in zip(results_list, mask_iou_preds):
            results.mask_scores = results.scores * mask_iou_pred[
                torch.arange(len(results), device=mask_iou_pred.device),
                results.labels]
        return results_list
