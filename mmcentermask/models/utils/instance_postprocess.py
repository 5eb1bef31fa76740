"""From network-input detections to final instances in the output frame.

The one home of the test-time output frame, used by
:class:`~mmcentermask.models.roi_heads.CenterMaskRoIHead`, the test-time
augmentation model and the ONNX Runtime runner: boxes are mapped from the
network-input frame (resized image, pixels) to the output frame, clipped to
the output canvas, empty boxes dropped, and the mask probabilities of the
predicted class pasted into the final boxes.

Shape shorthand: ``n`` = detections of one image, ``M`` = mask size (28),
``H x W`` = output canvas.
"""
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from mmdet.models.roi_heads.mask_heads.fcn_mask_head import (BYTES_PER_FLOAT,
                                                             GPU_MEM_LIMIT,
                                                             _do_paste_mask)
from mmengine.structures import InstanceData
from torch import Tensor


def output_canvas_shape(img_meta: dict, rescale: bool) -> Tuple[int, int]:
    """Output canvas (H, W) of one image.

    Args:
        img_meta (dict): ``ori_shape`` (h, w) and ``scale_factor`` (w, h).
        rescale (bool): Original image frame (``ori_shape``) if True, else
            the network-input frame: ``ori_shape * scale_factor`` rounded, as
            mmdet.

    Returns:
        tuple[int, int]: (H, W) in pixels.
    """
    ori_h, ori_w = img_meta['ori_shape'][:2]
    if rescale:
        return int(ori_h), int(ori_w)
    scale_w, scale_h = img_meta['scale_factor'][:2]
    return int(np.round(ori_h * scale_h)), int(np.round(ori_w * scale_w))


def _scale_axes(bboxes: Tensor, scale_x: float, scale_y: float) -> Tensor:
    """Boxes (n, 4) with x multiplied by ``scale_x`` and y by ``scale_y``
    (Python scalars: no host-to-device copy)."""
    xs = bboxes[:, 0::2] * scale_x
    ys = bboxes[:, 1::2] * scale_y
    return torch.stack((xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]), dim=1)


def to_output_frame(bboxes: Tensor, scale_factor: Sequence[float]) -> Tensor:
    """Boxes (n, 4) from the network-input frame to the original image.

    Multiplies by ``1 / scale_factor`` rounded to the box dtype, as
    detectron2 multiplies by original / resized size (see
    ``docs/fidelity.md``).

    Args:
        bboxes (Tensor): (x1, y1, x2, y2) network-input pixels, (n, 4).
        scale_factor (Sequence[float]): (w_scale, h_scale) of the resize.

    Returns:
        Tensor: A new tensor (n, 4), original-image pixels.
    """
    scale_w, scale_h = scale_factor[:2]
    return _scale_axes(bboxes, 1 / scale_w, 1 / scale_h)


def to_input_frame(bboxes: Tensor, scale_factor: Sequence[float]) -> Tensor:
    """Boxes (n, 4) from the original image to the network-input frame.

    Args:
        bboxes (Tensor): (x1, y1, x2, y2) original-image pixels, (n, 4).
        scale_factor (Sequence[float]): (w_scale, h_scale) of the resize.

    Returns:
        Tensor: A new tensor (n, 4), network-input pixels.
    """
    scale_w, scale_h = scale_factor[:2]
    return _scale_axes(bboxes, float(scale_w), float(scale_h))


def clip_to_canvas(bboxes: Tensor,
                   canvas_hw: Tuple[int, int]) -> Tuple[Tensor, Tensor]:
    """Clip boxes to [0, W] x [0, H] and flag the non-empty ones (width and
    height > 0), as detectron2's ``detector_postprocess``.

    Args:
        bboxes (Tensor): (x1, y1, x2, y2) pixels, (n, 4).
        canvas_hw (tuple[int, int]): (H, W).

    Returns:
        tuple[Tensor, Tensor]: Clipped boxes (n, 4), keep mask (n, ) bool.
    """
    height, width = canvas_hw
    xs = bboxes[:, 0::2].clamp(0, width)
    ys = bboxes[:, 1::2].clamp(0, height)
    bboxes = torch.stack((xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]), dim=1)
    keep = (xs[:, 1] > xs[:, 0]) & (ys[:, 1] > ys[:, 0])
    return bboxes, keep


def paste_masks(mask_probs: Tensor, bboxes: Tensor, canvas_hw: Tuple[int,
                                                                     int],
                mask_thr_binary: float) -> Tensor:
    """Paste mask probabilities into their boxes on the canvas.

    Bilinear resampling (``grid_sample``, ``align_corners=False``) with
    mmdet's ``_do_paste_mask``, chunked as mmdet's ``FCNMaskHead`` (one mask
    at a time inside its box on the CPU, chunks under a memory limit on the
    GPU), then ``>= mask_thr_binary``. Boxes entirely outside the canvas get
    empty masks.

    Args:
        mask_probs (Tensor): Probabilities of the predicted class,
            (n, M, M).
        bboxes (Tensor): Boxes on the canvas, (n, 4) pixels.
        canvas_hw (tuple[int, int]): (H, W).
        mask_thr_binary (float): Threshold; negative gives uint8 masks
            (probability x 255) instead of bool ones.

    Returns:
        Tensor: Masks (n, H, W), bool (uint8 if ``mask_thr_binary < 0``).
    """
    height, width = canvas_hw
    device = bboxes.device
    num = len(mask_probs)
    binary = mask_thr_binary >= 0
    masks = torch.zeros(
        num,
        height,
        width,
        device=device,
        dtype=torch.bool if binary else torch.uint8)
    # a box outside the canvas has an empty mask (and would give mmdet's
    # CPU paste an empty range)
    visible = ((bboxes[:, 2] > 0) & (bboxes[:, 0] < width) &
               (bboxes[:, 3] > 0) & (bboxes[:, 1] < height)).nonzero()[:, 0]
    if len(visible) == 0:
        return masks
    if device.type == 'cpu':
        num_chunks = len(visible)
    else:
        num_chunks = min(
            len(visible),
            int(
                np.ceil(num * height * width * BYTES_PER_FLOAT /
                        GPU_MEM_LIMIT)))
    for inds in torch.chunk(visible, num_chunks):
        chunk, spatial_inds = _do_paste_mask(
            mask_probs[inds][:, None],
            bboxes[inds],
            height,
            width,
            skip_empty=device.type == 'cpu')
        if binary:
            chunk = chunk >= mask_thr_binary
        else:
            chunk = (chunk * 255).to(dtype=torch.uint8)
        masks[(inds, ) + spatial_inds] = chunk
    return masks


def postprocess_instances(detections: InstanceData,
                          mask_probs: Tensor,
                          mask_scores: Tensor,
                          canvas_hw: Tuple[int, int],
                          scale_factor: Optional[Sequence[float]],
                          clip_boxes: bool,
                          mask_thr_binary: float) -> InstanceData:
    """Final instances of one image on its output canvas.

    Args:
        detections (:obj:`InstanceData`): ``bboxes`` (n, 4), ``scores``
            (n, ), ``labels`` (n, ); other fields are kept. Not modified.
        mask_probs (Tensor): Mask probabilities of each detection's class,
            (n, M, M), predicted for the unclipped boxes.
        mask_scores (Tensor): Mask scores (n, ) (box score x MaskIoU).
        canvas_hw (tuple[int, int]): Output canvas (H, W), see
            :func:`output_canvas_shape`.
        scale_factor (Sequence[float], optional): (w_scale, h_scale): the
            boxes are in the network-input frame and are mapped to the
            original image (:func:`to_output_frame`). None: the boxes are
            on the canvas already.
        clip_boxes (bool): Clip the boxes to the canvas, drop the empty
            ones and paste into the clipped boxes (detectron2), or keep
            them as they are (mmdet).
        mask_thr_binary (float): Probability threshold of the masks.

    Returns:
        :obj:`InstanceData`: The kept detections with canvas ``bboxes``
        (n', 4), ``masks`` (n', H, W) bool and ``mask_scores`` (n', );
        n' <= n (empty boxes dropped when ``clip_boxes``).
    """
    bboxes = detections.bboxes
    bboxes = bboxes.clone() if scale_factor is None else to_output_frame(
        bboxes, scale_factor)
    if clip_boxes:
        bboxes, keep = clip_to_canvas(bboxes, canvas_hw)
        keep = keep.nonzero()[:, 0]
        final = detections[keep]
        final.bboxes = bboxes[keep]
        mask_probs, mask_scores = mask_probs[keep], mask_scores[keep]
    else:
        final = detections.clone()
        final.bboxes = bboxes
    final.masks = paste_masks(mask_probs, final.bboxes, canvas_hw,
                              mask_thr_binary)
    final.mask_scores = mask_scores
    return final
