"""FCOS first stage of CenterMask with centermask2 (C2) semantics.

Shape shorthand in this module:

    N: images in the batch        C: foreground classes (80 for COCO)
    H_l, W_l: map size of level l P: positive locations of the batch
    K: candidates of one image    (location, class) pairs kept before NMS

Distances (l, t, r, b) are measured from a location to the box edges; they
are in *stride units* (pixels / level stride) when ``norm_on_bbox`` is True
(C2, training outputs and targets), in pixels otherwise (maskrcnn-benchmark,
"MB"). Boxes are (x1, y1, x2, y2) pixels of the resized (network input)
image unless ``rescale=True`` asks for the original image frame.

References: centermask2 ``centermask/modeling/fcos/{fcos,fcos_outputs}.py``
and ``centermask.layers.IOULoss``; maskrcnn-benchmark CenterMask
``maskrcnn_benchmark/modeling/rpn/fcos/{loss,inference}.py``.
"""
import copy
from typing import Dict, List, Optional, Tuple, Union

import torch
from mmcv.ops import batched_nms
from mmdet.models.dense_heads import FCOSHead
from mmdet.models.utils import filter_scores_and_topk, unpack_gt_instances
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.structures.bbox import get_box_wh, scale_boxes
from mmdet.utils import (ConfigType, InstanceList, OptConfigType,
                         OptInstanceList, reduce_mean)
from mmengine.structures import InstanceData
from torch import Tensor

LOSS_NORMALIZATIONS = ('c2', 'mb')
Divisor = Union[Tensor, float]


def per_class_nms(bboxes: Tensor, scores: Tensor, labels: Tensor,
                  nms_cfg: ConfigType) -> Tuple[Tensor, Tensor]:
    """Class-aware NMS, run class by class on the exact coordinates.

    mmcv's ``batched_nms`` (below 10000 boxes) instead shifts every box by
    class x (max coordinate + 1), which rounds coordinates by up to ~1e-2 px
    with 80 classes and can flip decisions at the IoU threshold (one extra
    detection on the V-39 coffee golden image). centermask2 on CPU
    (torchvision's per-class path above 1000 boxes) and maskrcnn-benchmark
    (``ml_nms``) compare exact coordinates.

    Args:
        bboxes (Tensor): Boxes (x1, y1, x2, y2), shape (K, 4).
        scores (Tensor): Scores, shape (K, ).
        labels (Tensor): Classes, shape (K, ).
        nms_cfg (dict): ``batched_nms`` config, e.g.
            ``dict(type='nms', iou_threshold=0.6)``.

    Returns:
        tuple[Tensor, Tensor]: ``dets`` (M, 5) = (x1, y1, x2, y2, score) by
        decreasing score and ``keep`` (M, ), their indices in the input.
    """
    kept = torch.zeros_like(scores, dtype=torch.bool)
    kept_scores = scores.new_zeros(scores.shape)
    for label in labels.unique():
        inds = (labels == label).nonzero().reshape(-1)
        dets, keep = batched_nms(
            bboxes[inds],
            scores[inds],
            labels[inds],
            nms_cfg,
            class_agnostic=True)
        kept[inds[keep]] = True
        kept_scores[inds[keep]] = dets[:, -1]
    keep = kept.nonzero().reshape(-1)
    det_scores, order = kept_scores[keep].sort(descending=True)
    keep = keep[order]
    return torch.cat([bboxes[keep], det_scores[:, None]], dim=1), keep


@MODELS.register_module()
class CenterMaskFCOSHead(FCOSHead):
    """FCOS head of `CenterMask <https://arxiv.org/abs/1911.06667>`_ with the
    semantics of the authors' centermask2 (C2) code.

    Defaults reproduce C2: centerness on the regression tower, GN(32) towers
    with conv bias, one ``Scale`` per level, ReLU regression in stride units,
    centre sampling (radius 1.5), GIoU with C2's +1 smoothing
    (:class:`CenterMaskGIoULoss`) and C2's loss normalisation. The mmdet
    target assignment (inclusive size ranges, strictly-inside centre region,
    minimum-area GT) is already C2's and is inherited.

    Post-processing (C2 ``FCOSOutputs.predict_proposals``), per image:

    1. per level: candidates are the (location, class) pairs whose class
       probability is > ``score_thr``; the ``nms_pre`` best of them by
       cls x ctr are kept (``nms_pre <= 0``: all);
    2. boxes are decoded with the level stride, **not clipped** (unless
       ``clip_boxes``); optional ``min_bbox_size`` filter (w and h must be
       larger; C2 has none);
    3. score = sqrt(cls x ctr) (``score_sqrt``), class-aware NMS in the
       resized-image frame (:func:`per_class_nms`);
    4. all detections scoring at least the ``max_per_img``-th best are kept,
       like C2's ``kthvalue`` cut (so exact ties can keep a few more;
       ``max_per_img <= 0``: no cut);
    5. with ``rescale``, boxes are mapped to the original image last.

    ``test_cfg`` / ``proposal_cfg`` keys: ``score_thr`` (C2 0.05, MB 0.03),
    ``nms_pre`` (1000), ``nms`` (e.g. ``dict(type='nms', iou_threshold=0.6)``;
    MB adds ``offset=1``), ``max_per_img`` (C2 100 train / 50 test),
    ``min_bbox_size`` (optional).

    In training, :meth:`loss_and_predict` returns detached proposals in
    pixels (mmdet's FCOSHead would return stride units with
    ``norm_on_bbox``).

    Args:
        num_classes (int): Number of foreground classes.
        in_channels (int): Channels of the input feature maps.
        strides (Sequence[int]): Strides of P3-P7.
            Defaults to (8, 16, 32, 64, 128).
        norm_on_bbox (bool): C2 regression when True: ReLU(scale * x) in
            stride units, targets divided by the stride. False gives MB's
            exp(scale * x) in pixels. Defaults to True.
        centerness_on_reg (bool): Centerness from the regression tower.
            Defaults to True.
        center_sampling (bool): Centre sampling. Defaults to True.
        center_sample_radius (float): In strides. Defaults to 1.5.
        conv_bias (bool | str): Bias of the tower convs. Defaults to True.
        loss_bbox (dict): IoU-type loss on boxes decoded around the origin.
            Defaults to ``CenterMaskGIoULoss``.
        score_sqrt (bool): Final score sqrt(cls x ctr) (C2) instead of
            cls x ctr (MB). Defaults to True.
        clip_boxes (bool): Clip decoded boxes to [0, w - 1] x [0, h - 1] of
            ``img_shape`` before NMS (MB's legacy clip). Defaults to False.
        loss_normalization (str): ``'c2'``: cls and ctr losses divided by
            max(mean num_pos over GPUs, 1), box loss by max(mean sum of
            centerness targets, 1e-6). ``'mb'`` (per GPU): cls by
            num_pos + N, box by the sum of centerness targets, ctr by
            num_pos. Defaults to ``'c2'``.
        **kwargs: Any other :class:`FCOSHead` / ``AnchorFreeHead`` argument
            (``feat_channels``, ``stacked_convs`` (C2 4, Lite 2),
            ``regress_ranges``, ``loss_cls``, ``norm_cfg``, ``init_cfg``...).

    Example:
        >>> head = CenterMaskFCOSHead(num_classes=80, in_channels=64,
        ...                           feat_channels=64, stacked_convs=2)
        >>> feats = [torch.rand(1, 64, 2 * s, 3 * s) for s in [8, 4, 2, 1, 1]]
        >>> cls_scores, bbox_preds, centernesses = head(feats)
        >>> [tuple(c.shape) for c in cls_scores][:2]
        [(1, 80, 16, 24), (1, 80, 8, 12)]
        >>> [tuple(b.shape) for b in bbox_preds][-1]
        (1, 4, 2, 3)
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 strides: Tuple[int, ...] = (8, 16, 32, 64, 128),
                 norm_on_bbox: bool = True,
                 centerness_on_reg: bool = True,
                 center_sampling: bool = True,
                 center_sample_radius: float = 1.5,
                 conv_bias: bool = True,
                 loss_bbox: ConfigType = dict(
                     type='CenterMaskGIoULoss', loss_weight=1.0),
                 score_sqrt: bool = True,
                 clip_boxes: bool = False,
                 loss_normalization: str = 'c2',
                 **kwargs) -> None:
        if loss_normalization not in LOSS_NORMALIZATIONS:
            raise ValueError(
                f'loss_normalization must be one of {LOSS_NORMALIZATIONS}, '
                f'got {loss_normalization!r}')
        self.score_sqrt = score_sqrt
        self.clip_boxes = clip_boxes
        self.loss_normalization = loss_normalization
        super().__init__(
            num_classes=num_classes,
            in_channels=in_channels,
            strides=strides,
            norm_on_bbox=norm_on_bbox,
            centerness_on_reg=centerness_on_reg,
            center_sampling=center_sampling,
            center_sample_radius=center_sample_radius,
            conv_bias=conv_bias,
            loss_bbox=loss_bbox,
            **kwargs)

    def loss_by_feat(
        self,
        cls_scores: List[Tensor],
        bbox_preds: List[Tensor],
        centernesses: List[Tensor],
        batch_gt_instances: InstanceList,
        batch_img_metas: List[dict],
        batch_gt_instances_ignore: OptInstanceList = None
    ) -> Dict[str, Tensor]:
        """Compute the FCOS losses (C2 ``fcos_losses``).

        Args:
            cls_scores (list[Tensor]): Class logits per level,
                shape (N, C, H_l, W_l).
            bbox_preds (list[Tensor]): Distances per level, shape
                (N, 4, H_l, W_l), in stride units with ``norm_on_bbox``.
            centernesses (list[Tensor]): Centerness logits per level,
                shape (N, 1, H_l, W_l).
            batch_gt_instances (list[:obj:`InstanceData`]): GT ``bboxes``
                (G, 4) in pixels and ``labels`` (G, ) per image.
            batch_img_metas (list[dict]): Image metas (unused).
            batch_gt_instances_ignore (list[:obj:`InstanceData`], optional):
                Ignored, as in C2.

        Returns:
            dict[str, Tensor]: ``loss_cls``, ``loss_bbox`` (the box loss
            weighted by the centerness targets) and ``loss_centerness``.
            Without positives the last two are graph-connected zeros.
        """
        featmap_sizes = [score.shape[-2:] for score in cls_scores]
        points = self.prior_generator.grid_priors(
            featmap_sizes,
            dtype=bbox_preds[0].dtype,
            device=bbox_preds[0].device)
        labels, bbox_targets = self.get_targets(points, batch_gt_instances)

        flat_cls_scores = self._flatten_levels(cls_scores)
        flat_bbox_preds = self._flatten_levels(bbox_preds)
        flat_centerness = self._flatten_levels(centernesses).reshape(-1)
        flat_labels = torch.cat(labels)
        flat_bbox_targets = torch.cat(bbox_targets)

        pos_inds = ((flat_labels >= 0) &
                    (flat_labels < self.num_classes)).nonzero().reshape(-1)
        pos_bbox_preds = flat_bbox_preds[pos_inds]
        pos_centerness = flat_centerness[pos_inds]
        pos_bbox_targets = flat_bbox_targets[pos_inds]
        pos_centerness_targets = self.centerness_target(pos_bbox_targets)
        cls_norm, bbox_norm, ctr_norm = self._loss_normalizers(
            len(pos_inds), pos_centerness_targets, len(batch_gt_instances))

        loss_cls = self.loss_cls(
            flat_cls_scores, flat_labels, avg_factor=cls_norm)
        if len(pos_inds) > 0:
            origin = pos_bbox_preds.new_zeros((len(pos_inds), 2))
            loss_bbox = self.loss_bbox(
                self.bbox_coder.decode(origin, pos_bbox_preds),
                self.bbox_coder.decode(origin, pos_bbox_targets),
                weight=pos_centerness_targets,
                avg_factor=bbox_norm)
            loss_centerness = self.loss_centerness(
                pos_centerness, pos_centerness_targets, avg_factor=ctr_norm)
        else:
            loss_bbox = pos_bbox_preds.sum()
            loss_centerness = pos_centerness.sum()
        return dict(
            loss_cls=loss_cls,
            loss_bbox=loss_bbox,
            loss_centerness=loss_centerness)

    @staticmethod
    def _flatten_levels(maps: List[Tensor]) -> Tensor:
        """(N, D, H_l, W_l) per level -> (sum_l N * H_l * W_l, D), level
        first, then image, then row-major location (the target order)."""
        return torch.cat(
            [m.permute(0, 2, 3, 1).reshape(-1, m.size(1)) for m in maps])

    def _loss_normalizers(self, num_pos: int, centerness_targets: Tensor,
                          num_imgs: int) -> Tuple[Divisor, Divisor, Divisor]:
        """Divisors of the cls, box and centerness losses.

        Args:
            num_pos (int): Positive locations on this GPU.
            centerness_targets (Tensor): Centerness targets of the
                positives, shape (P, ).
            num_imgs (int): Images on this GPU.

        Returns:
            tuple: Divisors (0-d tensors or floats) of the cls, box and
            centerness loss sums.
        """
        ctr_sum = centerness_targets.sum().detach()
        if self.loss_normalization == 'mb':
            return float(num_pos + num_imgs), ctr_sum, float(num_pos)
        num_pos_avg = max(
            reduce_mean(centerness_targets.new_tensor(float(num_pos))), 1.0)
        return num_pos_avg, max(reduce_mean(ctr_sum), 1e-6), num_pos_avg

    def loss_and_predict(
        self,
        x: Tuple[Tensor],
        batch_data_samples: SampleList,
        proposal_cfg: OptConfigType = None
    ) -> Tuple[Dict[str, Tensor], InstanceList]:
        """Losses and detached proposals from one forward pass.

        Args:
            x (tuple[Tensor]): FPN maps P3-P7, shape (N, C_f, H_l, W_l).
            batch_data_samples (list[:obj:`DetDataSample`]): With
                ``gt_instances`` and metainfo (``img_shape``).
            proposal_cfg (dict, optional): Post-processing config
                (C2 training: ``max_per_img=100``); ``test_cfg`` if None.

        Returns:
            tuple: ``(losses, proposals)``; each proposal
            :obj:`InstanceData` has ``bboxes`` (K, 4) in pixels of the
            resized image, ``scores`` (K, ) and ``labels`` (K, ).
        """
        (batch_gt_instances, batch_gt_instances_ignore,
         batch_img_metas) = unpack_gt_instances(batch_data_samples)
        cls_scores, bbox_preds, centernesses = self(x)
        losses = self.loss_by_feat(cls_scores, bbox_preds, centernesses,
                                   batch_gt_instances, batch_img_metas,
                                   batch_gt_instances_ignore)
        proposals = self.predict_by_feat(
            cls_scores,
            self._bbox_preds_in_pixels(bbox_preds),
            centernesses,
            batch_img_metas=batch_img_metas,
            cfg=proposal_cfg)
        return losses, proposals

    def _bbox_preds_in_pixels(self, bbox_preds: List[Tensor]) -> List[Tensor]:
        """Detached distances in pixels: ``forward`` multiplies the stride
        in only at eval time when ``norm_on_bbox`` (the loss needs stride
        units), so training outputs are multiplied here.

        Args:
            bbox_preds (list[Tensor]): Output of ``forward``,
                shape (N, 4, H_l, W_l).

        Returns:
            list[Tensor]: Distances in pixels, shape (N, 4, H_l, W_l).
        """
        if not (self.norm_on_bbox and self.training):
            return bbox_preds
        return [
            pred.detach() * stride
            for pred, stride in zip(bbox_preds, self.strides)
        ]

    def _predict_by_feat_single(self,
                                cls_score_list: List[Tensor],
                                bbox_pred_list: List[Tensor],
                                score_factor_list: List[Tensor],
                                mlvl_priors: List[Tensor],
                                img_meta: dict,
                                cfg: OptConfigType,
                                rescale: bool = False,
                                with_nms: bool = True) -> InstanceData:
        """Post-process the outputs of one image (see the class docstring).

        Args:
            cls_score_list (list[Tensor]): Class logits per level,
                shape (C, H_l, W_l).
            bbox_pred_list (list[Tensor]): Distances per level in pixels,
                shape (4, H_l, W_l).
            score_factor_list (list[Tensor]): Centerness logits per level,
                shape (1, H_l, W_l).
            mlvl_priors (list[Tensor]): Locations (x, y) per level,
                shape (H_l * W_l, 2).
            img_meta (dict): ``img_shape`` (h, w) of the resized image and,
                for ``rescale``, ``scale_factor`` (w_scale, h_scale).
            cfg (dict, optional): Post-processing config; ``test_cfg`` if
                None.
            rescale (bool): Boxes in the original image frame.
            with_nms (bool): Apply NMS and the ``max_per_img`` cut.

        Returns:
            :obj:`InstanceData`: ``bboxes`` (K, 4), ``scores`` (K, ) and
            ``labels`` (K, ) int64; by decreasing score with ``with_nms``.
        """
        if score_factor_list[0] is None:
            raise ValueError('CenterMaskFCOSHead needs the centerness maps '
                             'as score_factors')
        cfg = copy.deepcopy(self.test_cfg if cfg is None else cfg)
        selected = [
            self._select_level_candidates(cls_score, bbox_pred, centerness,
                                          priors, cfg.get('score_thr', 0.0),
                                          cfg.get('nms_pre', -1))
            for cls_score, bbox_pred, centerness, priors in zip(
                cls_score_list, bbox_pred_list, score_factor_list, mlvl_priors)
        ]
        scores, labels, bbox_preds, priors = (
            torch.cat(field) for field in zip(*selected))
        bboxes = self.bbox_coder.decode(priors, bbox_preds)
        if self.clip_boxes:
            bboxes = self._legacy_clip(bboxes, img_meta['img_shape'])
        results = InstanceData(bboxes=bboxes, scores=scores, labels=labels)
        return self._bbox_post_process(
            results=results,
            cfg=cfg,
            rescale=rescale,
            with_nms=with_nms,
            img_meta=img_meta)

    def _select_level_candidates(
            self, cls_score: Tensor, bbox_pred: Tensor, centerness: Tensor,
            priors: Tensor, score_thr: float,
            nms_pre: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Candidates of one level: class probability > ``score_thr``, then
        the ``nms_pre`` best by cls x ctr (C2 ranks by the product, mmdet's
        FCOSHead by the class probability alone).

        Args:
            cls_score (Tensor): Class logits, shape (C, H, W).
            bbox_pred (Tensor): Distances in pixels, shape (4, H, W).
            centerness (Tensor): Centerness logits, shape (1, H, W).
            priors (Tensor): Locations (x, y), shape (H * W, 2).
            score_thr (float): Threshold on the class probability.
            nms_pre (int): Candidates kept; all when <= 0.

        Returns:
            tuple[Tensor]: cls x ctr (K, ), labels (K, ), distances (K, 4),
            locations (K, 2), by decreasing cls x ctr.
        """
        cls_prob = cls_score.permute(1, 2, 0).reshape(
            -1, self.cls_out_channels).sigmoid()
        ctr_prob = centerness.permute(1, 2, 0).reshape(-1).sigmoid()
        # Products are >= 0: marking non-candidates with -1 lets
        # filter_scores_and_topk (threshold -1) keep exactly the candidates.
        ranking = torch.where(cls_prob > score_thr,
                              cls_prob * ctr_prob[:, None],
                              cls_prob.new_tensor(-1.0))
        scores, labels, _, kept = filter_scores_and_topk(
            ranking, -1.0, nms_pre if nms_pre > 0 else ranking.numel(),
            dict(
                bbox_pred=bbox_pred.permute(1, 2, 0).reshape(-1, 4),
                priors=priors))
        return scores, labels, kept['bbox_pred'], kept['priors']

    @staticmethod
    def _legacy_clip(bboxes: Tensor, img_shape: Tuple[int, int]) -> Tensor:
        """MB ``BoxList.clip_to_image``: x to [0, w - 1], y to [0, h - 1].

        Args:
            bboxes (Tensor): Boxes (x1, y1, x2, y2), shape (K, 4).
            img_shape (tuple[int, int]): (h, w) of the resized image.

        Returns:
            Tensor: Clipped boxes, shape (K, 4).
        """
        h, w = img_shape[:2]
        upper = bboxes.new_tensor([w - 1, h - 1, w - 1, h - 1])
        return torch.min(bboxes.clamp(min=0), upper)

    def _bbox_post_process(self,
                           results: InstanceData,
                           cfg: ConfigType,
                           rescale: bool = False,
                           with_nms: bool = True,
                           img_meta: Optional[dict] = None) -> InstanceData:
        """Score, size filter, NMS and cut in the resized frame, then
        rescale.

        Args:
            results (:obj:`InstanceData`): ``bboxes`` (K, 4), ``scores``
                (K, ) = cls x ctr and ``labels`` (K, ).
            cfg (dict): Post-processing config.
            rescale (bool): Map the boxes to the original image.
            with_nms (bool): Apply NMS and the ``max_per_img`` cut.
            img_meta (dict, optional): Needs ``scale_factor`` for
                ``rescale``.

        Returns:
            :obj:`InstanceData`: The detections.
        """
        if self.score_sqrt:
            results.scores = results.scores.sqrt()
        if cfg.get('min_bbox_size', -1) >= 0:
            w, h = get_box_wh(results.bboxes)
            results = results[(w > cfg['min_bbox_size'])
                              & (h > cfg['min_bbox_size'])]
        if with_nms and len(results) > 0:
            det_bboxes, keep = per_class_nms(results.bboxes, results.scores,
                                             results.labels, cfg['nms'])
            results = results[keep]
            results.scores = det_bboxes[:, -1]
            results = self._keep_top_scores(results,
                                            cfg.get('max_per_img', -1))
        if rescale:
            scale_factor = [1 / s for s in img_meta['scale_factor']]
            results.bboxes = scale_boxes(results.bboxes, scale_factor)
        return results

    @staticmethod
    def _keep_top_scores(results: InstanceData,
                         max_per_img: int) -> InstanceData:
        """C2's ``kthvalue`` cut: keep every detection whose score is at
        least the ``max_per_img``-th largest (ties may keep more).

        Args:
            results (:obj:`InstanceData`): Sorted by decreasing score.
            max_per_img (int): Detections to keep; no cut when <= 0.

        Returns:
            :obj:`InstanceData`: The kept detections, order unchanged.
        """
        if max_per_img <= 0 or len(results) <= max_per_img:
            return results
        return results[results.scores >= results.scores[max_per_img - 1]]
