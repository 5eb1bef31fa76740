"""Instance masks of point-representation CenterMask, assembled on a canvas.

Wang et al., "CenterMask: Single Shot Instance Segmentation with Point
Representation" (CVPR 2020), Sec. 3.3: the mask of instance k is

    M_k = sigmoid(L_k) * sigmoid(G_k)

where L_k is the S x S local-shape logit map of its centre point resized to
its box (h, w), and G_k is the global saliency logit map cropped with the same
box. Resizing then cropping per instance is equivalent to sampling the S x S
map at every canvas pixel centre that falls inside the box (the "paste on
canvas" form used here), so all instances are assembled at once, with one
``grid_sample`` and no Python loop over instances.

Shape shorthand: N instances, S the local-shape side, H x W the canvas (the
stride-4 feature grid). Boxes are ``(x1, y1, x2, y2)`` in canvas pixels
(feature-grid units, not input pixels).
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def clamp_box_size(boxes: Tensor, min_size: float) -> Tensor:
    """Grow boxes narrower or shorter than ``min_size`` about their centre.

    Args:
        boxes (Tensor): (N, 4) boxes ``(x1, y1, x2, y2)`` in canvas pixels.
        min_size (float): Smallest width and height, canvas pixels.

    Returns:
        Tensor: (N, 4) boxes with width and height >= ``min_size``.
    """
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    sizes = (boxes[:, 2:] - boxes[:, :2]).clamp(min=min_size)
    return torch.cat([centres - sizes / 2, centres + sizes / 2], dim=1)


def paste_local_shapes(shape_logits: Tensor, boxes: Tensor,
                       canvas_size: Tuple[int, int]) -> Tuple[Tensor, Tensor]:
    """Resize each S x S local-shape map to its box and paste it on a canvas.

    Canvas pixel (u, v) has its centre at (u + 0.5, v + 0.5). It belongs to
    box k when its centre lies in ``[x1, x2) x [y1, y2)``; there it takes
    the bilinear sample of the S x S map at source coordinates
    ``(u + 0.5 - x1) * S / w - 0.5`` (and likewise for rows), clamped to the
    map's edge. For integer boxes this equals
    ``F.interpolate(shape, size=(h, w), mode='bilinear',
    align_corners=False)`` placed at ``[y1:y2, x1:x2]``.

    Args:
        shape_logits (Tensor): (N, S, S) local-shape logits.
        boxes (Tensor): (N, 4) boxes ``(x1, y1, x2, y2)`` in canvas pixels,
            with positive width and height.
        canvas_size (tuple[int, int]): (H, W).

    Returns:
        tuple[Tensor, Tensor]: (N, H, W) resized logits (the box's edge
        values continue outside it) and the (N, H, W) bool box indicator.
    """
    height, width = canvas_size
    num = boxes.shape[0]
    device, dtype = shape_logits.device, shape_logits.dtype
    xs = torch.arange(width, device=device, dtype=dtype) + 0.5  # (W,)
    ys = torch.arange(height, device=device, dtype=dtype) + 0.5  # (H,)
    x1, y1, x2, y2 = boxes.to(dtype).unbind(dim=1)  # each (N,)
    # Normalised sampling coordinates in [-1, 1] across the box.
    grid_x = 2 * (xs[None] - x1[:, None]) / (x2 - x1)[:, None] - 1  # (N, W)
    grid_y = 2 * (ys[None] - y1[:, None]) / (y2 - y1)[:, None] - 1  # (N, H)
    grid = torch.stack([
        grid_x[:, None, :].expand(num, height, width),
        grid_y[:, :, None].expand(num, height, width)
    ], dim=-1)  # (N, H, W, 2)
    resized = F.grid_sample(
        shape_logits[:, None], grid, mode='bilinear', padding_mode='border',
        align_corners=False)[:, 0]  # (N, H, W)
    inside_x = (xs[None] >= x1[:, None]) & (xs[None] < x2[:, None])  # (N, W)
    inside_y = (ys[None] >= y1[:, None]) & (ys[None] < y2[:, None])  # (N, H)
    inside = inside_y[:, :, None] & inside_x[:, None, :]  # (N, H, W)
    return resized, inside


def assemble_masks(shape_logits: Tensor, saliency_logits: Tensor,
                   boxes: Tensor) -> Tuple[Tensor, Tensor]:
    """Instance masks ``sigmoid(L_k) * sigmoid(crop(G_k))`` on the canvas.

    Args:
        shape_logits (Tensor): (N, S, S) local-shape logits of each
            instance's centre point.
        saliency_logits (Tensor): (N, H, W) saliency logits of each
            instance's channel (its class for class-specific saliency, the
            single channel for class-agnostic saliency).
        boxes (Tensor): (N, 4) boxes ``(x1, y1, x2, y2)`` in canvas pixels,
            with positive width and height (see :func:`clamp_box_size`).

    Returns:
        tuple[Tensor, Tensor]: (N, H, W) mask probabilities, 0 outside each
        box, and the (N, H, W) bool box indicator.
    """
    resized, inside = paste_local_shapes(shape_logits, boxes,
                                         saliency_logits.shape[-2:])
    masks = resized.sigmoid() * saliency_logits.sigmoid() * inside
    return masks, inside


def masks_on_grid(masks: Tensor, grid_shape: Tuple[int, int],
                  input_shape: Tuple[int, int]) -> Tensor:
    """GT masks on a feature grid, by area averaging.

    Args:
        masks (Tensor): (n, h, w) binary masks, at most ``input_shape``
            in size (zero-padded to it at the bottom and right).
        grid_shape (tuple[int, int]): (H, W) of the feature grid.
        input_shape (tuple[int, int]): (h, w) of the padded network input
            the grid covers, pixels.

    Returns:
        Tensor: (n, H, W) float32 targets in [0, 1]: the fraction of each
        grid cell covered by the mask.
    """
    height = min(masks.shape[-2], input_shape[0])
    width = min(masks.shape[-1], input_shape[1])
    padded = masks.new_zeros(len(masks), *input_shape, dtype=torch.float32)
    padded[:, :height, :width] = masks[:, :height, :width]
    if len(masks) == 0:
        return padded.new_zeros(0, *grid_shape)
    return F.adaptive_avg_pool2d(padded, grid_shape)


def union_per_channel(mask_targets: Tensor, rows: Tensor,
                      num_rows: int) -> Tensor:
    """Per-pixel maximum of the instance targets that share a row index.

    Args:
        mask_targets (Tensor): (N, H, W) instance targets.
        rows (Tensor): (N,) row of each instance in the output (image
            index x channels + channel).
        num_rows (int): Rows of the output.

    Returns:
        Tensor: (num_rows, H, W), 0 where no instance falls.
    """
    height, width = mask_targets.shape[-2:]
    union = mask_targets.new_zeros(num_rows, height * width)
    return union.scatter_reduce_(
        0, rows[:, None].expand(-1, height * width), mask_targets.flatten(1),
        'amax').view(num_rows, height, width)


def mask_bce_per_instance(masks: Tensor, inside: Tensor,
                          targets: Tensor) -> Tensor:
    """Binary cross-entropy of assembled masks, averaged over each box.

    A product of sigmoids has no logits form, so this is plain BCE on the
    probabilities clamped to [1e-6, 1 - 1e-6], computed in float32
    (``F.binary_cross_entropy`` refuses half precision under autocast).

    Args:
        masks (Tensor): (N, H, W) mask probabilities.
        inside (Tensor): (N, H, W) bool box indicator.
        targets (Tensor): (N, H, W) targets in [0, 1].

    Returns:
        Tensor: (N,) mean BCE over the pixels of each box.
    """
    with torch.autocast(device_type=masks.device.type, enabled=False):
        eps = 1e-6
        bce = F.binary_cross_entropy(
            masks.float().clamp(eps, 1 - eps),
            targets.float(),
            reduction='none')
        weights = inside.float()
        return (bce * weights).sum(dim=(1, 2)) / weights.sum(
            dim=(1, 2)).clamp(min=1)
