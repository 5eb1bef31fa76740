"""MMDetection's visualizer with a bound on the size it draws at.

Drawing goes through matplotlib at the image's full resolution: on the CPU
that took about 140 bytes per pixel (a 6000 x 8000 photo: 6.7 GB for the
drawing alone, with no detection to draw), on top of the model's output
masks (one byte per pixel per detection). Pictures larger than
``max_pixels`` are therefore drawn downscaled, with the detections above the
score threshold scaled to match; smaller ones are drawn exactly as
MMDetection draws them.
"""
import math
from typing import Optional, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from mmdet.registry import VISUALIZERS
from mmdet.structures import DetDataSample
from mmdet.visualization import DetLocalVisualizer
from mmengine.structures import InstanceData, PixelData

#: 3840 x 2160 (4K UHD): drawn as it is; larger pictures are scaled down to
#: this many pixels (about 1.2 GB of drawing memory)
DEFAULT_MAX_PIXELS = 3840 * 2160
#: masks resized at once while scaling a sample down
MASK_CHUNK = 4


def drawing_scale(height: int, width: int, max_pixels: int) -> float:
    """The factor (<= 1) that brings ``height x width`` within
    ``max_pixels``."""
    pixels = height * width
    return 1. if pixels <= max_pixels else math.sqrt(max_pixels / pixels)


def resize_binary_masks(masks: torch.Tensor, size: Tuple[int, int],
                        index: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour resize of the masks ``masks[index]`` (bool, n x H x
    W) to (len(index), *size), :data:`MASK_CHUNK` masks at a time (no copy
    of the selected masks at full size)."""
    resized = masks.new_zeros((len(index), *size), dtype=torch.bool)
    for start in range(0, len(index), MASK_CHUNK):
        chunk = masks[index[start:start + MASK_CHUNK], None].to(torch.uint8)
        resized[start:start + MASK_CHUNK] = F.interpolate(
            chunk, size=size, mode='nearest')[:, 0].bool()
    return resized


def scale_instances(instances: InstanceData, scale: float,
                    size: Tuple[int, int],
                    index: torch.Tensor) -> InstanceData:
    """The instances ``index`` as drawn on an image resized by ``scale`` to
    ``size`` (h, w): boxes scaled, masks resized (bool tensors, or
    MMDetection's mask structures)."""
    masks = instances.get('masks')
    others = InstanceData(metainfo=instances.metainfo)
    for key, value in instances.items():
        if key != 'masks':
            others.set_field(value, key)
    scaled = others[index]
    if 'bboxes' in scaled:
        scaled.bboxes = scaled.bboxes * scale
    if isinstance(masks, torch.Tensor):
        scaled.masks = resize_binary_masks(masks, size, index)
    elif masks is not None:
        scaled.masks = masks[index.numpy()].resize(size)
    return scaled


def scale_pixel_data(pixel_data: PixelData,
                     size: Tuple[int, int]) -> PixelData:
    """Label maps ``sem_seg`` (1, H, W) resized nearest to ``size``."""
    scaled = PixelData(metainfo=pixel_data.metainfo)
    scaled.sem_seg = F.interpolate(
        pixel_data.sem_seg[None].float(), size=size,
        mode='nearest')[0].to(pixel_data.sem_seg.dtype)
    return scaled


@VISUALIZERS.register_module()
class BoundedDetLocalVisualizer(DetLocalVisualizer):
    """:class:`~mmdet.visualization.DetLocalVisualizer` that draws pictures
    larger than ``max_pixels`` downscaled to that many pixels.

    Only the predictions above ``pred_score_thr`` (the ones drawn) are
    scaled, so a 6000 x 8000 photo with 50 detections is drawn in about
    1.2 GB instead of 9 GB. ``tools/demo.py`` and ``tools/web_demo.py`` use
    it; set ``visualizer=dict(type='BoundedDetLocalVisualizer', ...)`` in a
    config for ``tools/test.py --show-dir``.

    Args:
        name (str): Instance name. Defaults to ``'visualizer'``.
        max_pixels (int): Largest picture drawn at full size, in pixels.
            Defaults to 3840 x 2160.
        **kwargs: The other arguments of
            :class:`~mmdet.visualization.DetLocalVisualizer`.
    """

    def __init__(self,
                 name: str = 'visualizer',
                 max_pixels: int = DEFAULT_MAX_PIXELS,
                 **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        if max_pixels < 1:
            raise ValueError(f'max_pixels must be >= 1, got {max_pixels}')
        self.max_pixels = max_pixels

    def add_datasample(self,
                       name: str,
                       image: np.ndarray,
                       data_sample: Optional[DetDataSample] = None,
                       draw_gt: bool = True,
                       draw_pred: bool = True,
                       show: bool = False,
                       wait_time: float = 0,
                       out_file: Optional[str] = None,
                       pred_score_thr: float = 0.3,
                       step: int = 0) -> None:
        """See :meth:`DetLocalVisualizer.add_datasample`; ``image`` and
        ``data_sample`` are scaled down first when ``image`` has more than
        :attr:`max_pixels` pixels."""
        height, width = image.shape[:2]
        scale = drawing_scale(height, width, self.max_pixels)
        if scale < 1:
            size = (max(1, round(height * scale)), max(1, round(width * scale)))
            image = cv2.resize(image, size[::-1], interpolation=cv2.INTER_AREA)
            if data_sample is not None:
                data_sample = self.scaled_sample(data_sample, scale, size,
                                                 pred_score_thr)
        super().add_datasample(name, image, data_sample, draw_gt, draw_pred,
                               show, wait_time, out_file, pred_score_thr,
                               step)

    @staticmethod
    def scaled_sample(data_sample: DetDataSample, scale: float,
                      size: Tuple[int, int],
                      pred_score_thr: float) -> DetDataSample:
        """The parts of ``data_sample`` that are drawn, at ``size``."""
        scaled = DetDataSample(metainfo=data_sample.metainfo)
        for field in ('gt_instances', 'pred_instances'):
            if field not in data_sample:
                continue
            instances = data_sample.get(field)
            if field == 'pred_instances' and 'scores' in instances:
                index = (instances.scores > pred_score_thr).nonzero()[:, 0]
            else:
                index = torch.arange(len(instances))
            scaled.set_field(
                scale_instances(instances, scale, size, index), field)
        for field in ('gt_sem_seg', 'pred_sem_seg', 'gt_panoptic_seg',
                      'pred_panoptic_seg'):
            if field in data_sample:
                scaled.set_field(
                    scale_pixel_data(data_sample.get(field), size), field)
        return scaled
