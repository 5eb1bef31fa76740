"""RoIAlign on the CPU as one sparse matrix product per feature map.

mmcv's CPU ``roi_align`` walks every output element on one thread and reads
the NCHW feature map one channel plane at a time; with adaptive sampling
(``sampling_ratio=0``) a large RoI on P3 takes 20-40 samples per bin. Here
every output bin is a fixed linear combination of feature-map pixels (the
bilinear weights of its sample points, divided by their count), so the
whole layer is ``M @ F``: ``M`` a sparse (RoIs x bins, B x H x W) CSR matrix
of those weights and ``F`` the feature map viewed as (B x H x W, C) rows,
which is free for a channels-last tensor. PyTorch's sparse-dense product
runs on all threads and its backward is the transposed product.

The sample points, their validity (more than one pixel outside the map
contributes nothing) and the bilinear weights follow mmcv's ``roi_align``
(detectron2's ``ROIAlign`` / ``ROIAlignV2``) operation by operation in
float32; only the order of the summation differs (and the ``1 / count`` is
folded into the weights), so results equal mmcv's up to float32 rounding
(tests).
"""
import warnings
from typing import Tuple

import torch
from mmcv.ops import RoIAlign
from mmdet.registry import MODELS
from torch import Tensor

#: upper bound on the stored entries of one sparse matrix (each entry: one
#: int64 column and one float weight); RoIs with many samples per bin are
#: split into several products instead of a larger matrix.
MAX_MATRIX_ENTRIES = 1 << 22


@MODELS.register_module()
class SparseRoIAlign(RoIAlign):
    """mmcv's :class:`~mmcv.ops.RoIAlign` with a multi-threaded CPU path.

    Same arguments and outputs as :class:`~mmcv.ops.RoIAlign`. Average
    pooling on the CPU in float32 / float64 runs as a sparse matrix product
    (module docstring); everything else (GPU, ``pool_mode='max'``,
    ``use_torchvision=True``, ONNX export, other dtypes) is mmcv's op, on a
    contiguous (NCHW) copy of the input as mmcv's kernels need.

    Used by the CenterMask configs (``roi_layer=dict(type='SparseRoIAlign',
    ...)`` inside :class:`AdaptiveLevelRoIExtractor`); ``type='RoIAlign'``
    is mmcv's kernel everywhere (detectron2's algorithm and summation
    order). Measured on the RoIs of the golden coffee image (2 threads,
    2-core Xeon, 2026-12-02; mmcv's time includes the NCHW copy it needs of
    a channels-last map): the three pooled levels of CenterMask V2-39
    166 -> 23 ms, of CenterMask-Lite 46 -> 16 ms.
    """

    def forward(self, input: Tensor, rois: Tensor) -> Tensor:
        """Pool ``rois`` from ``input``.

        Args:
            input (Tensor): Feature maps (B, C, H, W), any memory format.
            rois (Tensor): (k, 5) ``(batch_index, x1, y1, x2, y2)`` in
                pixels of the network input (scaled by ``spatial_scale``).

        Returns:
            Tensor: (k, C, S_h, S_w) pooled features; channels-last
            strided on the sparse path, contiguous from mmcv's op.
        """
        if not self.uses_sparse_path(input):
            return super().forward(input.contiguous(), rois)
        batch, channels, height, width = input.shape
        pooled_h, pooled_w = self.output_size
        samples = self.sample_grid(rois.to(input.dtype))
        # (B*H*W, C) rows; a view for a channels-last input
        pixels = input.permute(0, 2, 3, 1).reshape(-1, channels)
        # in the input's dtype: CPU autocast would run the product in
        # bfloat16, which has no sparse kernel
        with torch.autocast('cpu', enabled=False):
            outputs = [
                torch.sparse.mm(
                    self.bilinear_matrix(chunk, height, width, batch), pixels)
                for chunk in self.chunks(samples)
            ]
        out = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
        return out.view(-1, pooled_h, pooled_w, channels).permute(0, 3, 1, 2)

    def uses_sparse_path(self, input: Tensor) -> bool:
        """Whether ``input`` goes through the sparse product."""
        return (input.device.type == 'cpu' and self.pool_mode == 'avg'
                and not self.use_torchvision
                and input.dtype in (torch.float32, torch.float64)
                and not torch.onnx.is_in_onnx_export())

    def sample_grid(self, rois: Tensor) -> Tensor:
        """Sampled region of each RoI, in feature-map pixels.

        Args:
            rois (Tensor): (k, 5) RoIs in input pixels.

        Returns:
            Tensor: (k, 7) columns ``batch_index``, ``start_y``,
            ``start_x``, ``bin_h``, ``bin_w`` (pixels), ``grid_h``,
            ``grid_w`` (samples per bin along each axis, whole numbers >= 0).
        """
        offset = 0.5 if self.aligned else 0.
        start_x = rois[:, 1] * self.spatial_scale - offset
        start_y = rois[:, 2] * self.spatial_scale - offset
        roi_w = rois[:, 3] * self.spatial_scale - offset - start_x
        roi_h = rois[:, 4] * self.spatial_scale - offset - start_y
        if not self.aligned:
            roi_w = roi_w.clamp(min=1.)
            roi_h = roi_h.clamp(min=1.)
        elif bool((roi_w < 0).any() | (roi_h < 0).any()):
            bad = rois[(roi_w < 0) | (roi_h < 0)][0].tolist()
            raise ValueError(
                f'RoI {bad} (batch index, x1, y1, x2, y2) has x2 < x1 or '
                'y2 < y1; aligned RoIAlign needs boxes of non-negative size '
                '(mmcv rejects them too): clip or drop such boxes first')
        bin_h = roi_h / self.output_size[0]
        bin_w = roi_w / self.output_size[1]
        if self.sampling_ratio > 0:
            grid_h = torch.full_like(bin_h, self.sampling_ratio)
            grid_w = grid_h
        else:
            grid_h = torch.ceil(bin_h).clamp(min=0)
            grid_w = torch.ceil(bin_w).clamp(min=0)
        return torch.stack(
            [rois[:, 0], start_y, start_x, bin_h, bin_w, grid_h, grid_w], 1)

    def chunks(self, samples: Tensor) -> Tuple[Tensor, ...]:
        """Split the rows of :meth:`sample_grid` (in order) so that no
        matrix holds more than :data:`MAX_MATRIX_ENTRIES` entries."""
        per_roi = (4 * self.output_size[0] * self.output_size[1] *
                   _largest_grid(samples[:, 5]) * _largest_grid(samples[:, 6]))
        return samples.split(max(MAX_MATRIX_ENTRIES // per_roi, 1))

    def bilinear_matrix(self, samples: Tensor, height: int, width: int,
                        batch: int) -> Tensor:
        """The (k x S_h x S_w, B x H x W) CSR matrix of sample weights.

        Row ``(r, i, j)`` holds, for bin ``(i, j)`` of RoI ``r``, the four
        bilinear weights of each of its ``grid_h x grid_w`` samples divided
        by their count, at the flat pixel index ``b*H*W + y*W + x`` of the
        RoI's image ``b``. Every row stores the same number of entries (the
        largest grid of the chunk); unused samples have weight 0.

        Args:
            samples (Tensor): (k, 7) rows of :meth:`sample_grid`.
            height (int): Feature-map height H.
            width (int): Feature-map width W.
            batch (int): Images B in the feature map.
        """
        image, start_y, start_x, bin_h, bin_w, grid_h, grid_w = samples.unbind(
            1)
        max_h, max_w = _largest_grid(grid_h), _largest_grid(grid_w)
        y_pixels, y_weights = _axis_samples(start_y, bin_h, grid_h, max_h,
                                            self.output_size[0], height)
        x_pixels, x_weights = _axis_samples(start_x, bin_w, grid_w, max_w,
                                            self.output_size[1], width)
        count = (grid_h * grid_w).clamp(min=1)
        # (k, S_h, S_w, max_h, max_w, 2, 2): the last two axes are the lower
        # / upper pixel along y and x (mmcv's w1..w4 and pos1..pos4 order)
        weights = _outer(y_weights, x_weights) / count.view(-1, *[1] * 6)
        image = image.long() * (height * width)
        columns = _outer(y_pixels * width, x_pixels,
                         torch.add) + image.view(-1, *[1] * 6)
        rows = len(samples) * self.output_size[0] * self.output_size[1]
        per_row = 4 * max_h * max_w
        row_starts = torch.arange(0, rows * per_row + 1, per_row)
        with warnings.catch_warnings():
            # "Sparse CSR tensor support is in beta state"
            warnings.simplefilter('ignore', UserWarning)
            return torch.sparse_csr_tensor(
                row_starts,
                columns.reshape(-1),
                weights.reshape(-1), (rows, batch * height * width),
                check_invariants=False)


def _largest_grid(grid: Tensor) -> int:
    """Samples per bin stored along one axis: the largest of ``grid``, at
    least 1 (also for no RoIs)."""
    return max(int(grid.max()), 1) if len(grid) else 1


def _axis_samples(start: Tensor, bin_size: Tensor, grid: Tensor,
                  max_grid: int, pooled: int,
                  size: int) -> Tuple[Tensor, Tensor]:
    """Sample coordinates along one axis, as mmcv's ``roi_align`` computes
    them (float32 operation order kept).

    Args:
        start (Tensor): (k,) RoI start in feature pixels.
        bin_size (Tensor): (k,) bin length in feature pixels.
        grid (Tensor): (k,) samples per bin (whole numbers as floats).
        max_grid (int): Samples per bin stored (the largest ``grid``).
        pooled (int): Bins along the axis.
        size (int): Feature-map length along the axis.

    Returns:
        tuple[Tensor]: each (k, pooled, max_grid, 2): the lower and upper
        pixel of every sample (int64) and their linear-interpolation
        weights, 0 for samples that do not count (not one of the RoI's own
        samples, or more than one pixel outside the map).
    """
    bins = torch.arange(pooled, dtype=start.dtype, device=start.device)
    samples = torch.arange(max_grid, dtype=start.dtype, device=start.device)
    # a RoI without samples (grid 0) divides by 1 instead: never used
    coords = ((start[:, None] + bins * bin_size[:, None])[:, :, None] +
              ((samples + 0.5) * bin_size[:, None] /
               grid.clamp(min=1)[:, None])[:, None, :])
    valid = (coords >= -1.) & (coords <= size) & (samples < grid[:, None,
                                                                   None])
    coords = coords.clamp(min=0)
    low = coords.long()
    at_edge = low >= size - 1
    low = low.clamp(max=size - 1)
    high = torch.where(at_edge, low, low + 1)
    frac = torch.where(at_edge, torch.zeros_like(coords), coords - low)
    weights = torch.stack([1. - frac, frac], -1) * valid[..., None]
    return torch.stack([low, high], -1), weights


def _outer(y_part: Tensor, x_part: Tensor, op=torch.mul) -> Tensor:
    """(k, S_h, G_h, 2) x (k, S_w, G_w, 2) -> (k, S_h, S_w, G_h, G_w, 2, 2)
    with ``op`` (product or sum) of every y / x pair."""
    return op(y_part[:, :, None, :, None, :, None],
              x_part[:, None, :, None, :, None, :])
