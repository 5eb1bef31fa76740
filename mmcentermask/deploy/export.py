"""The whole CenterMask test-time computation as one traceable module, and
its export to one ONNX file.

Graph inputs and outputs (one image per run; ``n`` = detections, ``K`` =
classes, ``M`` = mask size, 28):

====================  =====================================================
``image``             (1, 3, H, W) float32: the image after the config's
                      data preprocessor (mean/std normalised, BGR/RGB as
                      configured, zero-padded to a multiple of the
                      ``pad_size_divisor``).
``image_size``        (2, ) int64: (h, w) of the image before padding (the
                      ``img_shape`` of the resized image).
``boxes``             (n, 4) float32: (x1, y1, x2, y2) in pixels of the
                      network input (resized, not rescaled, not clipped).
``scores``            (n, ) float32: FCOS box scores, decreasing.
``labels``            (n, ) int64: classes.
``mask_probs``        (n, M, M) float32: mask probabilities of the
                      predicted class on the box's 28 x 28 grid.
``mask_scores``       (n, ) float32: box score x predicted MaskIoU.
====================  =====================================================

In the graph: backbone, FPN, FCOS heads, location decoding, per-level
top-k, class-aware NMS (``NonMaxSuppression``), the ``max_per_img`` cut,
the RoI level assignment, RoIAlign on the pooled levels (``RoiAlign``),
SAG-Mask and MaskIoU. Outside (see :mod:`mmcentermask.deploy.ort_runner`):
the test pipeline, normalisation and padding (the data preprocessor),
rescaling to the original image, clipping and mask pasting.
"""
import warnings
from typing import Optional, Sequence, Tuple

import torch
from mmcv.ops import DeformConv2d, ModulatedDeformConv2d, RoIAlign
from torch import Tensor, nn

from ..models.dense_heads import CenterMaskFCOSHead
from ..models.detectors import CenterMask
from ..models.roi_heads import AdaptiveLevelRoIExtractor
from .onnx_ops import MIN_OPSET, non_max_suppression, roi_align

INPUT_NAMES = ('image', 'image_size')
OUTPUT_NAMES = ('boxes', 'scores', 'labels', 'mask_probs', 'mask_scores')
DEFAULT_OPSET = 17
#: ``max_output_boxes_per_class`` of the NMS: no cap (PyTorch has none)
NO_NMS_CAP = 2**31 - 1
#: class scores of a box for the classes it is not a candidate of; the NMS
#: score threshold sits between them and the real scores (>= 0)
NOT_A_CANDIDATE = -1.
NMS_SCORE_THRESHOLD = -0.5
DEFORMABLE_CONVS = (DeformConv2d, ModulatedDeformConv2d)


def fixed_size_caveat(fixed_size: Tuple[int, int],
                      padded_size: Optional[Tuple[int, int]] = None) -> str:
    """What a fixed-size export does to images of another padded size.

    Args:
        fixed_size (tuple[int, int]): (H, W) the graph was exported for.
        padded_size (tuple[int, int], optional): (h, w) of an image after
            the data preprocessor's padding, when one is at hand.

    Returns:
        str: The warning, naming the sizes and the fix.
    """
    fixed_h, fixed_w = fixed_size
    image = ('an image whose padded size is not that' if padded_size is None
             else f'this image, {padded_size[0]}x{padded_size[1]} as PyTorch '
             'pads it,')
    return (f'the ONNX model takes a fixed {fixed_h}x{fixed_w} input: '
            f'{image} is zero-padded to {fixed_h}x{fixed_w} and gives other '
            "results than PyTorch, which pads only to the preprocessor's "
            'pad_size_divisor: the GroupNorm statistics of the FCOS head '
            '(every CenterMask config) include the padding (boxes moved by '
            'up to 24 px on COCO images). Export without --shape (dynamic '
            "height and width, the default) to keep PyTorch's results.")


def check_exportable(detector: nn.Module) -> None:
    """Raise if the detector has a part the ONNX graph cannot express.

    Args:
        detector (nn.Module): A built model.

    Raises:
        TypeError: Not a :class:`CenterMask` with a
            :class:`CenterMaskFCOSHead` and an
            :class:`AdaptiveLevelRoIExtractor`.
        NotImplementedError: A panoptic detector, deformable convolutions
            (DCN configs), max RoI pooling, or an NMS other than
            ``type='nms'``.
    """
    if not isinstance(detector, CenterMask):
        raise TypeError('only CenterMask detectors can be exported, got '
                        f'{type(detector).__name__}')
    if hasattr(detector, 'semantic_head'):
        raise NotImplementedError(
            f'{type(detector).__name__} (a panoptic config) does not export: '
            'the graph holds the instance outputs only and would drop the '
            'semantic and panoptic results. Export the instance config of '
            'the same backbone (e.g. centermask_vovnet-v2-39_fpn_ms-3x_coco.py)'
            ' or run the panoptic model in PyTorch.')
    for name, module in detector.named_modules():
        if isinstance(module, DEFORMABLE_CONVS):
            raise NotImplementedError(
                f'{name} is a deformable convolution (mmcv '
                f'{type(module).__name__}, a DCN config): ONNX Runtime has '
                'no kernel for it (ONNX DeformConv, opset 19, is not '
                'implemented by its CPU provider), so this model cannot be '
                'exported. Export the same family without DCN (e.g. '
                'centermask_vovnet-v2-39_fpn_ms-3x_coco.py).')
    if not isinstance(detector.bbox_head, CenterMaskFCOSHead):
        raise TypeError('the export needs a CenterMaskFCOSHead, got '
                        f'{type(detector.bbox_head).__name__}')
    extractor = detector.roi_head.mask_roi_extractor
    if not isinstance(extractor, AdaptiveLevelRoIExtractor):
        raise TypeError('the export needs an AdaptiveLevelRoIExtractor, got '
                        f'{type(extractor).__name__}')
    for layer in extractor.roi_layers:
        if not isinstance(layer, RoIAlign) or layer.pool_mode != 'avg':
            raise NotImplementedError(
                'only average mmcv RoIAlign layers export (ONNX RoiAlign '
                f'mode avg), got {layer!r}')
    nms_type = detector.bbox_head.test_cfg['nms'].get('type', 'nms')
    if nms_type != 'nms':
        raise NotImplementedError(
            f'test_cfg.fcos.nms.type={nms_type!r} has no ONNX operator; '
            "only type='nms' (ONNX NonMaxSuppression) exports")


class CenterMaskExportModule(nn.Module):
    """CenterMask inference, image tensor to per-detection outputs, written
    with traceable operations only (see the module docstring for the
    inputs and outputs).

    Equal to ``CenterMask.predict`` before rescaling and pasting: FCOS
    post-processing as :class:`CenterMaskFCOSHead` (candidates with class
    probability > ``score_thr``, the ``nms_pre`` best per level by
    cls x ctr, score ``sqrt(cls x ctr)``, exact per-class NMS, every
    detection scoring at least the ``max_per_img``-th best), then the
    RoI head's level rule, RoIAlign, SAG-Mask and MaskIoU on the kept
    detections. Detections whose scores tie exactly may come in another
    order than in PyTorch.

    Args:
        detector (:obj:`CenterMask`): The model; the module and the
            model are put in eval mode.
    """

    def __init__(self, detector: CenterMask) -> None:
        super().__init__()
        check_exportable(detector)
        self.detector = detector
        # torch.onnx.export restores this module's mode after tracing, and
        # with it the detector's: both stay in eval mode
        self.eval()
        head = detector.bbox_head
        test_cfg = head.test_cfg
        self.score_thr = float(test_cfg.get('score_thr', 0.0))
        self.nms_pre = int(test_cfg.get('nms_pre', -1))
        self.max_per_img = int(test_cfg.get('max_per_img', -1))
        self.min_bbox_size = float(test_cfg.get('min_bbox_size', -1))
        self.iou_threshold = float(test_cfg['nms']['iou_threshold'])
        # mmcv nms offset=1 (maskrcnn-benchmark's legacy "+1" box size)
        self.nms_box_offset = float(test_cfg['nms'].get('offset', 0))

    def forward(self, image: Tensor,
                image_size: Tensor) -> Tuple[Tensor, ...]:
        """Detect and segment one image.

        Args:
            image (Tensor): Normalised padded image, shape (1, 3, H, W).
            image_size (Tensor): (h, w) before padding, shape (2, ), int64.

        Returns:
            tuple[Tensor]: ``boxes`` (n, 4), ``scores`` (n, ), ``labels``
            (n, ), ``mask_probs`` (n, M, M), ``mask_scores`` (n, ).
        """
        feats = self.detector.neck(self.detector.backbone(image))
        cls_scores, bbox_preds, centernesses = self.detector.bbox_head(
            self.detector.fcos_feats(feats))
        boxes, scores, labels = self.detect(cls_scores, bbox_preds,
                                            centernesses, image_size)
        mask_probs, mask_scores = self.segment(
            self.detector.mask_feats(feats), boxes, scores, labels,
            image_size)
        return boxes, scores, labels, mask_probs, mask_scores

    def detect(self, cls_scores: Sequence[Tensor],
               bbox_preds: Sequence[Tensor], centernesses: Sequence[Tensor],
               image_size: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """FCOS post-processing of one image.

        Args:
            cls_scores (Sequence[Tensor]): Class logits per level,
                shape (1, K, H_l, W_l).
            bbox_preds (Sequence[Tensor]): Distances (l, t, r, b) in pixels
                per level, shape (1, 4, H_l, W_l).
            centernesses (Sequence[Tensor]): Centerness logits per level,
                shape (1, 1, H_l, W_l).
            image_size (Tensor): (h, w) before padding, shape (2, ).

        Returns:
            tuple[Tensor]: ``boxes`` (n, 4) in pixels, ``scores`` (n, ) by
            decreasing value, ``labels`` (n, ) int64.
        """
        head = self.detector.bbox_head
        candidates = [
            self._level_candidates(cls_score, bbox_pred, centerness, stride)
            for cls_score, bbox_pred, centerness, stride in zip(
                cls_scores, bbox_preds, centernesses, head.strides)
        ]
        boxes, scores, labels = (torch.cat(field)
                                 for field in zip(*candidates))
        if head.clip_boxes:
            boxes = self._legacy_clip(boxes, image_size)
        if head.score_sqrt:
            scores = scores.sqrt()
        if self.min_bbox_size >= 0:
            widths, heights = (boxes[:, 2] - boxes[:, 0],
                               boxes[:, 3] - boxes[:, 1])
            big = ((widths > self.min_bbox_size) &
                   (heights > self.min_bbox_size)).nonzero().view(-1)
            boxes, scores, labels = boxes[big], scores[big], labels[big]
        keep = self._class_aware_nms(boxes, scores, labels, head.num_classes)
        keep = self._keep_top_scores(keep, scores)
        return boxes[keep], scores[keep], labels[keep]

    def _level_candidates(self, cls_score: Tensor, bbox_pred: Tensor,
                          centerness: Tensor,
                          stride: int) -> Tuple[Tensor, Tensor, Tensor]:
        """Decoded candidates of one level: class probability >
        ``score_thr``, then the ``nms_pre`` best by cls x ctr.

        Args:
            cls_score (Tensor): Class logits, shape (1, K, H, W).
            bbox_pred (Tensor): Distances in pixels, shape (1, 4, H, W).
            centerness (Tensor): Centerness logits, shape (1, 1, H, W).
            stride (int): Level stride in pixels.

        Returns:
            tuple[Tensor]: boxes (k, 4) in pixels, cls x ctr (k, ) and
            labels (k, ) int64.
        """
        num_classes = cls_score.size(1)
        cls_prob = cls_score[0].permute(1, 2, 0).reshape(
            -1, num_classes).sigmoid()
        ctr_prob = centerness[0].permute(1, 2, 0).reshape(-1).sigmoid()
        ranking = torch.where(cls_prob > self.score_thr,
                              cls_prob * ctr_prob[:, None],
                              cls_prob.new_tensor(NOT_A_CANDIDATE)).reshape(-1)
        if self.nms_pre > 0:
            # padding makes k = nms_pre valid for any map size (the padded
            # entries are not candidates)
            padded = torch.cat(
                [ranking,
                 ranking.new_full((self.nms_pre, ), NOT_A_CANDIDATE)])
            ranking, flat_index = padded.topk(self.nms_pre)
            is_candidate = (ranking > NOT_A_CANDIDATE).nonzero().view(-1)
            ranking, flat_index = (ranking[is_candidate],
                                   flat_index[is_candidate])
        else:
            flat_index = (ranking > NOT_A_CANDIDATE).nonzero().view(-1)
            ranking = ranking[flat_index]
        location = flat_index // num_classes
        labels = flat_index % num_classes
        distances = bbox_pred[0].permute(1, 2, 0).reshape(-1, 4)[location]
        # location centres, as mmdet's MlvlPointGenerator (offset 0.5)
        ones = torch.ones_like(centerness[0, 0])
        columns = (ones.cumsum(1) - 1).view(-1)[location]
        rows = (ones.cumsum(0) - 1).view(-1)[location]
        x, y = (columns + 0.5) * stride, (rows + 0.5) * stride
        boxes = torch.stack([
            x - distances[:, 0], y - distances[:, 1], x + distances[:, 2],
            y + distances[:, 3]
        ], 1)
        return boxes, ranking, labels

    @staticmethod
    def _legacy_clip(boxes: Tensor, image_size: Tensor) -> Tensor:
        """maskrcnn-benchmark clipping: x to [0, w - 1], y to [0, h - 1].

        Args:
            boxes (Tensor): Boxes, shape (k, 4).
            image_size (Tensor): (h, w), shape (2, ).

        Returns:
            Tensor: Clipped boxes, shape (k, 4).
        """
        upper = image_size.flip(0).repeat(2).to(boxes.dtype) - 1
        return torch.min(boxes.clamp(min=0), upper)

    def _class_aware_nms(self, boxes: Tensor, scores: Tensor, labels: Tensor,
                         num_classes: int) -> Tensor:
        """Indices of the boxes kept by the per-class NMS (any order).

        Args:
            boxes (Tensor): Boxes, shape (k, 4).
            scores (Tensor): Scores, shape (k, ).
            labels (Tensor): Classes, shape (k, ).
            num_classes (int): K.

        Returns:
            Tensor: Kept indices, shape (m, ), int64.
        """
        if self.nms_box_offset:
            boxes = boxes + boxes.new_tensor(
                [0., 0., self.nms_box_offset, self.nms_box_offset])
        classes = torch.arange(num_classes, device=labels.device)
        class_scores = torch.where(labels[None] == classes[:, None],
                                   scores[None],
                                   scores.new_tensor(NOT_A_CANDIDATE))
        selected = non_max_suppression(boxes[None], class_scores[None],
                                       NO_NMS_CAP, self.iou_threshold,
                                       NMS_SCORE_THRESHOLD)
        return selected[:, 2]

    def _keep_top_scores(self, keep: Tensor, scores: Tensor) -> Tensor:
        """centermask2's ``kthvalue`` cut, then sorting by score.

        Args:
            keep (Tensor): Indices kept by the NMS, shape (m, ).
            scores (Tensor): Scores of all candidates, shape (k, ).

        Returns:
            Tensor: Indices of the detections scoring at least the
            ``max_per_img``-th best, by decreasing score, shape (n, ).
        """
        kept_scores = scores[keep]
        if self.max_per_img > 0:
            # -inf padding: with fewer than max_per_img detections the
            # cut-off is -inf and every detection stays
            padded = torch.cat([
                kept_scores,
                kept_scores.new_full((self.max_per_img, ), float('-inf'))
            ])
            cutoff = padded.topk(self.max_per_img)[0][-1]
            above = (kept_scores >= cutoff).nonzero().view(-1)
            keep, kept_scores = keep[above], kept_scores[above]
        order = kept_scores.argsort(descending=True)
        return keep[order]

    def segment(self, feats: Sequence[Tensor], boxes: Tensor, scores: Tensor,
                labels: Tensor, image_size: Tensor) -> Tuple[Tensor, Tensor]:
        """Mask probabilities and mask scores of the detections.

        Args:
            feats (Sequence[Tensor]): FPN maps, shape (1, F, H_l, W_l).
            boxes (Tensor): Detections in pixels, shape (n, 4).
            scores (Tensor): Box scores, shape (n, ).
            labels (Tensor): Classes, shape (n, ), int64.
            image_size (Tensor): (h, w) before padding, shape (2, ).

        Returns:
            tuple[Tensor]: ``mask_probs`` (n, M, M) of each detection's
            class and ``mask_scores`` (n, ) = score x predicted MaskIoU.
        """
        roi_head = self.detector.roi_head
        roi_feats = self._pool(feats, boxes, labels, image_size)
        mask_logits = roi_head.mask_head(roi_feats)
        if roi_head.mask_head.class_agnostic:
            class_logits = mask_logits[:, 0]
        else:
            index = labels[:, None, None, None].expand(
                -1, 1, mask_logits.size(2), mask_logits.size(3))
            class_logits = mask_logits.gather(1, index)[:, 0]
        mask_ious = roi_head.mask_iou_head(roi_feats, class_logits)
        mask_scores = scores * mask_ious.gather(1, labels[:, None])[:, 0]
        return class_logits.sigmoid(), mask_scores

    def _pool(self, feats: Sequence[Tensor], boxes: Tensor, labels: Tensor,
              image_size: Tensor) -> Tensor:
        """RoIAlign every box on the level the extractor's rule picks.

        Every box is pooled on every level and the assigned level's result
        is kept (a handful of boxes: cheaper than dynamic indexing).

        Args:
            feats (Sequence[Tensor]): FPN maps, shape (1, F, H_l, W_l).
            boxes (Tensor): Boxes in pixels, shape (n, 4).
            labels (Tensor): Classes, shape (n, ) (gives the batch index).
            image_size (Tensor): (h, w) before padding, shape (2, ).

        Returns:
            Tensor: RoI features, shape (n, F, S, S).
        """
        extractor = self.detector.roi_head.mask_roi_extractor
        batch_indices = labels * 0
        rois = torch.cat([batch_indices[:, None].to(boxes.dtype), boxes], 1)
        image_area = (image_size[0] * image_size[1]).to(torch.float32)
        levels = extractor.map_roi_levels(rois, image_area)
        roi_feats: Optional[Tensor] = None
        boxes = extractor.with_min_extent(boxes)
        for level, (feat, layer) in enumerate(
                zip(feats[:extractor.num_inputs], extractor.roi_layers)):
            pooled = roi_align(feat, boxes, batch_indices, layer.output_size,
                               layer.spatial_scale, layer.sampling_ratio,
                               layer.aligned)
            on_level = (levels == level)[:, None, None, None]
            pooled = torch.where(on_level, pooled, pooled.new_zeros(()))
            roi_feats = pooled if roi_feats is None else roi_feats + pooled
        return roi_feats


def export_onnx(detector: CenterMask,
                output_file: str,
                input_shape: Tuple[int, int],
                dynamic: bool = True,
                opset: int = DEFAULT_OPSET) -> None:
    """Export a CenterMask detector to one ONNX file.

    Args:
        detector (:obj:`CenterMask`): The model (put in eval mode).
        output_file (str): Path of the ``.onnx`` file.
        input_shape (tuple[int, int]): (H, W) of the padded input used for
            tracing; the only accepted input size unless ``dynamic``.
        dynamic (bool): Let the input height and width vary, so that every
            image is run at the size PyTorch runs it. False fixes the input
            to ``input_shape`` and warns (:func:`fixed_size_caveat`).
            Defaults to True.
        opset (int): ONNX opset, at least 16 (RoiAlign ``half_pixel``).

    Raises:
        ValueError: An opset below 16.
    """
    if opset < MIN_OPSET:
        raise ValueError(f'--opset {opset} is too old: RoiAlign with '
                         f'half-pixel coordinates needs opset >= {MIN_OPSET}')
    module = CenterMaskExportModule(detector)
    height, width = input_shape
    image = torch.zeros(1, 3, height, width)
    image_size = torch.tensor([height, width])
    dynamic_axes = {name: {0: 'detections'} for name in OUTPUT_NAMES}
    if dynamic:
        dynamic_axes['image'] = {2: 'height', 3: 'width'}
    else:
        warnings.warn(fixed_size_caveat(input_shape))
    with torch.no_grad(), warnings.catch_warnings():
        # shape-dependent Python in mmdet's modules is constant for a given
        # config; the tracer's warnings about it are noise here
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        torch.onnx.export(
            module, (image, image_size),
            output_file,
            dynamo=False,
            opset_version=opset,
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic_axes)
