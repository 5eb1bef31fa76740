"""FCOS first stage of CenterMask.

Shape shorthand in this module:

    N: images in the batch        C: foreground classes (80 for COCO)
    H_l, W_l: map size of level l P: positive locations of the batch
    K: candidates of one image    (location, class) pairs kept before NMS

Distances (l, t, r, b) are measured from a location to the box edges; they
are in *stride units* (pixels / level stride) when ``norm_on_bbox`` is True
(training outputs and targets), in pixels otherwise. Boxes are
(x1, y1, x2, y2) pixels of the resized (network input) image unless
``rescale=True`` asks for the original image frame. How each default and
switch relates to the authors' two implementations is in
``docs/fidelity.md``.
"""
import copy
import math
from typing import Dict, List, Optional, Tuple, Union

import torch
from mmcv.ops import batched_nms
from mmcv.ops.nms import NMSop
from mmdet.models.dense_heads import FCOSHead
from mmdet.models.utils import filter_scores_and_topk, unpack_gt_instances
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.structures.bbox import get_box_wh
from mmdet.utils import (ConfigType, InstanceList, OptConfigType,
                         OptInstanceList, reduce_mean)
from mmengine.structures import InstanceData
from torch import Tensor

from ..utils import clip_to_canvas, force_float32, to_output_frame

LOSS_NORMALIZATIONS = ('centermask2', 'maskrcnn_benchmark')
Divisor = Union[Tensor, float]


NMS_MODES = ('auto', 'exact', 'batched')
CANDIDATE_SORTS = ('topk', 'full')
#: torchvision's ``batched_nms`` (which centermask2 calls) runs class by
#: class above this many box coordinates, one offset call below
PER_CLASS_NMS_NUMEL = dict(cpu=4000, cuda=20000)


def class_aware_nms(bboxes: Tensor,
                    scores: Tensor,
                    labels: Tensor,
                    nms_cfg: ConfigType,
                    mode: str = 'auto') -> Tuple[Tensor, Tensor]:
    """Class-aware NMS.

    Modes:

    - ``'exact'``: class by class on the exact coordinates
      (:func:`per_class_nms`);
    - ``'batched'``: one NMS call on boxes shifted by class x (max
      coordinate + 1). The shift rounds coordinates by up to ~1e-2 px with
      80 classes, which can flip decisions at the IoU threshold;
    - ``'auto'``: centermask2's rule (torchvision's ``batched_nms``):
      ``'exact'`` above 4000 box coordinates on the CPU and 20000 on a GPU,
      ``'batched'`` below.

    Args:
        bboxes (Tensor): Boxes (x1, y1, x2, y2), shape (K, 4).
        scores (Tensor): Scores, shape (K, ).
        labels (Tensor): Classes, shape (K, ).
        nms_cfg (dict): ``batched_nms`` config, e.g.
            ``dict(type='nms', iou_threshold=0.6)``.
        mode (str): One of :data:`NMS_MODES`. Defaults to ``'auto'``.

    Returns:
        tuple[Tensor, Tensor]: ``dets`` (M, 5) = (x1, y1, x2, y2, score) by
        decreasing score and ``keep`` (M, ), their indices in the input.
    """
    if mode not in NMS_MODES:
        raise ValueError(f'nms_mode must be one of {NMS_MODES}, got {mode!r}')
    if mode == 'auto':
        limit = PER_CLASS_NMS_NUMEL.get(bboxes.device.type,
                                        PER_CLASS_NMS_NUMEL['cuda'])
        mode = 'exact' if bboxes.numel() > limit else 'batched'
    if mode == 'batched':
        return batched_nms(bboxes, scores, labels,
                           dict(nms_cfg, split_thr=math.inf))
    return per_class_nms(bboxes, scores, labels, nms_cfg)


def per_class_nms(bboxes: Tensor, scores: Tensor, labels: Tensor,
                  nms_cfg: ConfigType) -> Tuple[Tensor, Tensor]:
    """Class-aware NMS, run class by class on the exact coordinates.

    The boxes are grouped by one stable sort on the labels and one host
    read of the class counts; each class keeps its boxes in input order.

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
    cfg = dict(nms_cfg)
    cfg.pop('class_agnostic', None)
    cfg.pop('split_thr', None)
    sorted_labels, order = torch.sort(labels, stable=True)
    counts = torch.unique_consecutive(sorted_labels, return_counts=True)[1]
    kept_inds, kept_scores = [], []
    for inds in order.split(counts.tolist()):
        keep, det_scores = _nms_of_one_class(bboxes[inds], scores[inds], cfg)
        kept_inds.append(inds[keep])
        kept_scores.append(det_scores)
    # by input index, then by decreasing score: the order of a single pass
    keep, by_index = torch.cat(kept_inds).sort()
    det_scores, by_score = torch.cat(kept_scores)[by_index].sort(
        descending=True)
    keep = keep[by_score]
    return torch.cat([bboxes[keep], det_scores[:, None]], dim=1), keep


def _nms_of_one_class(bboxes: Tensor, scores: Tensor,
                      nms_cfg: dict) -> Tuple[Tensor, Tensor]:
    """NMS of the boxes (k, 4) of one class: kept indices (m, ) by
    decreasing score and their scores (m, ). Plain ``nms`` calls mmcv's
    kernel directly; other types go through ``batched_nms``."""
    cfg = dict(nms_cfg)
    if cfg.pop('type', 'nms') != 'nms':
        dets, keep = batched_nms(
            bboxes, scores, scores.new_zeros(len(scores)), nms_cfg,
            class_agnostic=True)
        return keep, dets[:, -1]
    keep = NMSop.apply(bboxes, scores, cfg.pop('iou_threshold'),
                       cfg.pop('offset', 0), cfg.pop('score_threshold', 0),
                       cfg.pop('max_num', -1))
    return keep, scores[keep]


@MODELS.register_module()
class CenterMaskFCOSHead(FCOSHead):
    """FCOS head of `CenterMask <https://arxiv.org/abs/1911.06667>`_.

    Defaults: centerness on the regression tower, GN(32) towers with conv
    bias, one ``Scale`` per level, ReLU regression in stride units, centre
    sampling (radius 1.5), GIoU with +1 smoothing
    (:class:`CenterMaskGIoULoss`) and the loss normalisation of
    ``loss_normalization``. Target assignment (inclusive size ranges,
    strictly-inside centre region, minimum-area GT) is :class:`FCOSHead`'s.

    Post-processing, per image:

    1. per level: candidates are the (location, class) pairs whose class
       probability is > ``score_thr``; the ``nms_pre`` best of them by
       cls x ctr are kept (``nms_pre <= 0``: all);
    2. boxes are decoded with the level stride, **not clipped** (unless
       ``clip_boxes``); optional ``min_bbox_size`` filter (w and h must be
       larger);
    3. score = sqrt(cls x ctr) (``score_sqrt``), class-aware NMS in the
       resized-image frame (:func:`per_class_nms`);
    4. all detections scoring at least the ``max_per_img``-th best are kept
       (so exact ties can keep a few more; ``max_per_img <= 0``: no cut);
    5. with ``rescale``, boxes are mapped to the original image last.

    ``test_cfg`` / ``proposal_cfg`` keys: ``score_thr`` (0.05), ``nms_pre``
    (1000), ``nms`` (e.g. ``dict(type='nms', iou_threshold=0.6)``),
    ``max_per_img`` (100 training RoIs / 50 test detections),
    ``min_bbox_size`` (optional).

    In training, :meth:`loss_and_predict` returns detached detections in
    pixels (mmdet's FCOSHead would return stride units with
    ``norm_on_bbox``).

    Args:
        num_classes (int): Number of foreground classes.
        in_channels (int): Channels of the input feature maps.
        strides (Sequence[int]): Strides of P3-P7.
            Defaults to (8, 16, 32, 64, 128).
        norm_on_bbox (bool): ReLU(scale * x) in stride units, targets
            divided by the stride, when True; exp(scale * x) in pixels when
            False. Defaults to True.
        centerness_on_reg (bool): Centerness from the regression tower.
            Defaults to True.
        center_sampling (bool): Centre sampling. Defaults to True.
        center_sample_radius (float): In strides. Defaults to 1.5.
        conv_bias (bool | str): Bias of the tower convs. Defaults to True.
        loss_bbox (dict): IoU-type loss on boxes decoded around the origin.
            Defaults to ``CenterMaskGIoULoss``.
        score_sqrt (bool): Final score sqrt(cls x ctr) instead of
            cls x ctr. Defaults to True.
        clip_boxes (bool): Clip decoded boxes to [0, w - 1] x [0, h - 1] of
            ``img_shape`` before NMS (a legacy clip). Defaults to False.
        loss_normalization (str): ``'centermask2'``: cls and ctr losses
            divided by max(mean num_pos over GPUs, 1), box loss by max(mean
            sum of centerness targets, 1e-6). ``'maskrcnn_benchmark'`` (per
            GPU): cls by num_pos + N, box by the sum of centerness targets,
            ctr by num_pos. Defaults to ``'centermask2'``.
        **kwargs: Any other :class:`FCOSHead` / ``AnchorFreeHead`` argument
            (``feat_channels``, ``stacked_convs`` (CenterMask 4, Lite 2),
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
                 loss_normalization: str = 'centermask2',
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

    @force_float32
    def loss_by_feat(
        self,
        cls_scores: List[Tensor],
        bbox_preds: List[Tensor],
        centernesses: List[Tensor],
        batch_gt_instances: InstanceList,
        batch_img_metas: List[dict],
        batch_gt_instances_ignore: OptInstanceList = None
    ) -> Dict[str, Tensor]:
        """Compute the FCOS losses, in float32 with autocast off (see
        :func:`~mmcentermask.models.utils.force_float32`).

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
                Ignored.

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
        if self.loss_normalization == 'maskrcnn_benchmark':
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
                (training: ``max_per_img=100``); ``test_cfg`` if None.

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

    @force_float32
    def predict_by_feat(self,
                        cls_scores: List[Tensor],
                        bbox_preds: List[Tensor],
                        score_factors: Optional[List[Tensor]] = None,
                        batch_img_metas: Optional[List[dict]] = None,
                        cfg: OptConfigType = None,
                        rescale: bool = False,
                        with_nms: bool = True) -> InstanceList:
        """:meth:`FCOSHead.predict_by_feat` in float32 with autocast off:
        under mixed precision the locations, decoded boxes and NMS class
        offsets would otherwise be float16 / bfloat16 (see
        :func:`~mmcentermask.models.utils.force_float32`).

        Args:
            cls_scores (list[Tensor]): Class logits per level,
                shape (N, C, H_l, W_l).
            bbox_preds (list[Tensor]): Distances in pixels per level,
                shape (N, 4, H_l, W_l).
            score_factors (list[Tensor], optional): Centerness logits per
                level, shape (N, 1, H_l, W_l).
            batch_img_metas (list[dict], optional): Image metas.
            cfg (:obj:`ConfigDict`, optional): Post-processing config;
                ``test_cfg`` if None.
            rescale (bool): Boxes in the original image frame.
            with_nms (bool): Apply NMS.

        Returns:
            list[:obj:`InstanceData`]: Per image, ``bboxes`` (K, 4),
            ``scores`` (K, ) and ``labels`` (K, ), float32 boxes and scores.
        """
        return super().predict_by_feat(cls_scores, bbox_preds, score_factors,
                                       batch_img_metas, cfg, rescale, with_nms)

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
        results, _ = self._select_candidates(cls_score_list, bbox_pred_list,
                                             score_factor_list, mlvl_priors,
                                             img_meta, cfg)
        return self._bbox_post_process(
            results=results,
            cfg=cfg,
            rescale=rescale,
            with_nms=with_nms,
            img_meta=img_meta)

    def _select_candidates(self, cls_score_list: List[Tensor],
                           bbox_pred_list: List[Tensor],
                           score_factor_list: List[Tensor],
                           mlvl_priors: List[Tensor], img_meta: dict,
                           cfg: ConfigType) -> Tuple[InstanceData, Tensor]:
        """The candidates of every level of one image (steps 1-2 of the
        class docstring), decoded.

        Args:
            cls_score_list, bbox_pred_list, score_factor_list, mlvl_priors:
                See :meth:`_predict_by_feat_single`; the priors may carry
                columns after (x, y), which are returned.
            img_meta (dict): ``img_shape`` of the resized image.
            cfg (dict): ``score_thr``, ``nms_pre``, ``candidate_sort``.

        Returns:
            tuple: :obj:`InstanceData` with ``bboxes`` (K, 4), ``scores``
            (K, ) = cls x ctr and ``labels`` (K, ), and the prior row of
            each candidate (K, P).
        """
        candidate_sort = cfg.get('candidate_sort', 'topk')
        if candidate_sort not in CANDIDATE_SORTS:
            raise ValueError(f'candidate_sort must be one of '
                             f'{CANDIDATE_SORTS}, got {candidate_sort!r}')
        select = self._select_level_candidates if candidate_sort == 'topk' \
            else self._select_level_candidates_by_full_sort
        selected = [
            select(cls_score, bbox_pred, centerness, priors,
                   cfg.get('score_thr', 0.0), cfg.get('nms_pre', -1))
            for cls_score, bbox_pred, centerness, priors in zip(
                cls_score_list, bbox_pred_list, score_factor_list, mlvl_priors)
        ]
        scores, labels, bbox_preds, priors = (
            torch.cat(field) for field in zip(*selected))
        valid = (scores >= 0).nonzero()[:, 0]
        priors = priors[valid]
        bboxes = self.bbox_coder.decode(priors[:, :2], bbox_preds[valid])
        if self.clip_boxes:
            bboxes = self._legacy_clip(bboxes, img_meta['img_shape'])
        return InstanceData(
            bboxes=bboxes, scores=scores[valid], labels=labels[valid]), priors

    def _level_ranking(self, cls_score: Tensor, centerness: Tensor,
                       score_thr: float) -> Tensor:
        """cls x ctr of every (location, class) pair of one level, -1 where
        the class probability is not > ``score_thr`` (products are >= 0).

        Args:
            cls_score (Tensor): Class logits, shape (C, H, W).
            centerness (Tensor): Centerness logits, shape (1, H, W).
            score_thr (float): Threshold on the class probability.

        Returns:
            Tensor: Ranking, shape (H * W, C).
        """
        cls_prob = cls_score.permute(1, 2, 0).reshape(
            -1, self.cls_out_channels).sigmoid()
        ctr_prob = centerness.permute(1, 2, 0).reshape(-1).sigmoid()
        return torch.where(cls_prob > score_thr, cls_prob * ctr_prob[:, None],
                           -1.0)

    def _select_level_candidates(
            self, cls_score: Tensor, bbox_pred: Tensor, centerness: Tensor,
            priors: Tensor, score_thr: float,
            nms_pre: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Candidates of one level: class probability > ``score_thr``, then
        the ``nms_pre`` best by cls x ctr, with one ``topk`` and no host
        synchronisation (the non-candidates among them are dropped after
        all levels, by their score of -1).

        Args:
            cls_score (Tensor): Class logits, shape (C, H, W).
            bbox_pred (Tensor): Distances in pixels, shape (4, H, W).
            centerness (Tensor): Centerness logits, shape (1, H, W).
            priors (Tensor): Locations (x, y), shape (H * W, 2).
            score_thr (float): Threshold on the class probability.
            nms_pre (int): Candidates kept; all when <= 0.

        Returns:
            tuple[Tensor]: cls x ctr (k, ) (-1: not a candidate), labels
            (k, ), distances (k, 4), locations (k, 2), by decreasing
            cls x ctr; k = ``nms_pre`` or H * W * C if smaller.
        """
        ranking = self._level_ranking(cls_score, centerness, score_thr)
        num = ranking.numel()
        scores, inds = ranking.reshape(-1).topk(
            min(nms_pre, num) if nms_pre > 0 else num)
        locations = torch.div(
            inds, self.cls_out_channels, rounding_mode='floor')
        labels = inds % self.cls_out_channels
        return (scores, labels, bbox_pred.permute(1, 2, 0).reshape(-1, 4)
                [locations], priors[locations])

    def _select_level_candidates_by_full_sort(
            self, cls_score: Tensor, bbox_pred: Tensor, centerness: Tensor,
            priors: Tensor, score_thr: float,
            nms_pre: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """:meth:`_select_level_candidates` with mmdet's
        ``filter_scores_and_topk`` (every candidate sorted; exact ties may
        be ordered differently than by ``topk``). Returns candidates
        only."""
        ranking = self._level_ranking(cls_score, centerness, score_thr)
        scores, labels, _, kept = filter_scores_and_topk(
            ranking, -1.0, nms_pre if nms_pre > 0 else ranking.numel(),
            dict(
                bbox_pred=bbox_pred.permute(1, 2, 0).reshape(-1, 4),
                priors=priors))
        return scores, labels, kept['bbox_pred'], kept['priors']

    @staticmethod
    def _legacy_clip(bboxes: Tensor, img_shape: Tuple[int, int]) -> Tensor:
        """Legacy clip: x to [0, w - 1], y to [0, h - 1].

        Args:
            bboxes (Tensor): Boxes (x1, y1, x2, y2), shape (K, 4).
            img_shape (tuple[int, int]): (h, w) of the resized image.

        Returns:
            Tensor: Clipped boxes, shape (K, 4).
        """
        height, width = img_shape[:2]
        return clip_to_canvas(bboxes, (height - 1, width - 1))[0]

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
            results = results[((w > cfg['min_bbox_size']) &
                               (h > cfg['min_bbox_size'])).nonzero()[:, 0]]
        if with_nms and len(results) > 0:
            det_bboxes, keep = class_aware_nms(results.bboxes, results.scores,
                                               results.labels, cfg['nms'],
                                               cfg.get('nms_mode', 'auto'))
            results = results[keep]
            results.scores = det_bboxes[:, -1]
            results = self._keep_top_scores(results,
                                            cfg.get('max_per_img', -1))
        if rescale:
            results.bboxes = to_output_frame(results.bboxes,
                                             img_meta['scale_factor'])
        return results

    @staticmethod
    def _keep_top_scores(results: InstanceData,
                         max_per_img: int) -> InstanceData:
        """The ``kthvalue`` cut: keep every detection whose score is at
        least the ``max_per_img``-th largest (ties may keep more).

        Args:
            results (:obj:`InstanceData`): Sorted by decreasing score.
            max_per_img (int): Detections to keep; no cut when <= 0.

        Returns:
            :obj:`InstanceData`: The kept detections, order unchanged.
        """
        if max_per_img <= 0 or len(results) <= max_per_img:
            return results
        kth_score = results.scores[max_per_img - 1]
        return results[:int((results.scores >= kth_score).sum())]
