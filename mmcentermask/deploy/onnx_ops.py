"""PyTorch functions that export as one standard ONNX operator each.

Each function computes its result with mmcv's kernels in PyTorch (so the
export wrapper can also be run and checked eagerly) and, when traced by
``torch.onnx.export`` (TorchScript exporter), is written to the graph as
the standard ONNX operator of the same semantics:

- :func:`non_max_suppression`: ONNX ``NonMaxSuppression`` (opset >= 11),
  one greedy NMS per class, exact coordinates;
- :func:`roi_align`: ONNX ``RoiAlign`` (opset >= 16, for the
  ``half_pixel`` coordinate mode = mmcv ``aligned=True``).

Shape shorthand: ``K`` = boxes, ``C`` = classes, ``M`` = kept boxes,
``n`` = RoIs, ``F`` = feature channels, ``S`` = RoI output size.
"""
from typing import Tuple

import torch
from mmcv.ops import nms as mmcv_nms
from mmcv.ops import roi_align as mmcv_roi_align
from torch import Tensor

#: first opset whose RoiAlign has ``coordinate_transformation_mode``
MIN_OPSET = 16


class _NonMaxSuppression(torch.autograd.Function):
    """Per-class greedy NMS with ONNX ``NonMaxSuppression`` semantics."""

    @staticmethod
    def forward(ctx, boxes: Tensor, scores: Tensor, max_output_per_class: int,
                iou_threshold: float, score_threshold: float) -> Tensor:
        selected = []
        for class_index, class_scores in enumerate(scores[0]):
            candidates = (class_scores > score_threshold).nonzero().view(-1)
            if candidates.numel() == 0:
                continue
            _, keep = mmcv_nms(boxes[0, candidates],
                               class_scores[candidates], iou_threshold)
            keep = candidates[keep[:max_output_per_class]]
            selected.append(
                torch.stack([
                    torch.zeros_like(keep),
                    torch.full_like(keep, class_index), keep
                ], 1))
        if not selected:
            return boxes.new_zeros((0, 3), dtype=torch.long)
        return torch.cat(selected)

    @staticmethod
    def symbolic(g, boxes, scores, max_output_per_class: int,
                 iou_threshold: float, score_threshold: float):
        return g.op(
            'NonMaxSuppression', boxes, scores,
            g.op('Constant',
                 value_t=torch.tensor([max_output_per_class],
                                      dtype=torch.long)),
            g.op('Constant',
                 value_t=torch.tensor([iou_threshold], dtype=torch.float)),
            g.op('Constant',
                 value_t=torch.tensor([score_threshold], dtype=torch.float)),
            center_point_box_i=0)


def non_max_suppression(boxes: Tensor, scores: Tensor,
                        max_output_per_class: int, iou_threshold: float,
                        score_threshold: float) -> Tensor:
    """Greedy NMS run separately for every class (ONNX semantics).

    A box takes part in the NMS of class ``c`` iff its score for ``c`` is
    strictly above ``score_threshold``; a box is suppressed by a higher
    scored kept box of the same class whose IoU with it is strictly above
    ``iou_threshold`` (mmcv ``nms`` and ONNX Runtime agree on both).

    Args:
        boxes (Tensor): Boxes (x1, y1, x2, y2) in pixels, shape (1, K, 4).
        scores (Tensor): Score of every box for every class, shape
            (1, C, K).
        max_output_per_class (int): At most this many boxes per class.
        iou_threshold (float): IoU above which a box is suppressed.
        score_threshold (float): Boxes scoring at most this for a class are
            ignored for it.

    Returns:
        Tensor: Selected ``(batch index, class, box index)`` rows, shape
        (M, 3), int64.
    """
    return _NonMaxSuppression.apply(boxes, scores, max_output_per_class,
                                    iou_threshold, score_threshold)


class _RoiAlign(torch.autograd.Function):
    """mmcv ``roi_align`` (average pooling) exported as ONNX ``RoiAlign``."""

    @staticmethod
    def forward(ctx, features: Tensor, boxes: Tensor, batch_indices: Tensor,
                output_size: Tuple[int, int], spatial_scale: float,
                sampling_ratio: int, aligned: bool) -> Tensor:
        rois = torch.cat([batch_indices[:, None].to(boxes.dtype), boxes], 1)
        return mmcv_roi_align(features, rois, output_size, spatial_scale,
                              sampling_ratio, 'avg', aligned)

    @staticmethod
    def symbolic(g, features, boxes, batch_indices,
                 output_size: Tuple[int, int], spatial_scale: float,
                 sampling_ratio: int, aligned: bool):
        return g.op(
            'RoiAlign',
            features,
            boxes,
            batch_indices,
            coordinate_transformation_mode_s=('half_pixel' if aligned else
                                              'output_half_pixel'),
            mode_s='avg',
            output_height_i=output_size[0],
            output_width_i=output_size[1],
            sampling_ratio_i=sampling_ratio,
            spatial_scale_f=spatial_scale)


def roi_align(features: Tensor, boxes: Tensor, batch_indices: Tensor,
              output_size: Tuple[int, int], spatial_scale: float,
              sampling_ratio: int, aligned: bool) -> Tensor:
    """Average RoIAlign, equal to mmcv ``RoIAlign(pool_mode='avg')``.

    ``aligned=True`` (detectron2 ``ROIAlignV2``) shifts the box by half a
    pixel and does not enlarge boxes smaller than a pixel: ONNX
    ``half_pixel``; ``aligned=False`` is ONNX ``output_half_pixel``.
    ``sampling_ratio=0`` samples ``ceil(box side / output side)`` points per
    bin (adaptive), in both.

    Args:
        features (Tensor): Feature map (B, F, H, W).
        boxes (Tensor): Boxes (x1, y1, x2, y2) in input pixels, shape (n, 4).
        batch_indices (Tensor): Image of each box, shape (n, ), int64.
        output_size (tuple[int, int]): (S, S).
        spatial_scale (float): Feature map size / input size (1 / stride).
        sampling_ratio (int): Sampling points per bin side; 0: adaptive.
        aligned (bool): Half-pixel box coordinates.

    Returns:
        Tensor: Pooled features, shape (n, F, S, S).
    """
    return _RoiAlign.apply(features, boxes, batch_indices, output_size,
                           spatial_scale, sampling_ratio, aligned)
