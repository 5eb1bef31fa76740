"""CenterNet's random centre crop and pad, extended to instance masks."""
from typing import Union

import numpy as np
from mmdet.datasets.transforms import RandomCenterCropPad
from mmdet.registry import TRANSFORMS
from mmdet.structures.mask import BitmapMasks, PolygonMasks
from numpy import random


def crop_and_paste_masks(
        masks: Union[BitmapMasks, PolygonMasks], patch: np.ndarray,
        out_shape: tuple, top: int,
        left: int) -> Union[BitmapMasks, PolygonMasks]:
    """Crop ``patch`` out of the masks and paste it at (``top``, ``left``)
    of an empty ``out_shape`` canvas.

    Args:
        masks (BitmapMasks | PolygonMasks): Masks of the original image.
        patch (np.ndarray): ``(x0, y0, x1, y1)`` integer crop region in
            original-image pixels, inside the image.
        out_shape (tuple): ``(h, w)`` of the output image, pixels.
        top (int): Row of the output image where the patch's top lands.
        left (int): Column of the output image where the patch's left lands.

    Returns:
        BitmapMasks | PolygonMasks: Masks of the output image, same type.
    """
    cropped = masks.crop(patch)
    if isinstance(cropped, BitmapMasks):
        return cropped.expand(*out_shape, top, left)
    offset = np.array([left, top], dtype=np.float64)
    shifted = [[(polygon.reshape(-1, 2) + offset).reshape(-1)
                for polygon in polygons] for polygons in cropped.masks]
    return PolygonMasks(shifted, *out_shape)


@TRANSFORMS.register_module()
class RandomCenterCropPadWithMask(RandomCenterCropPad):
    """:class:`mmdet.datasets.transforms.RandomCenterCropPad` that also
    crops and pads ``gt_masks`` (mmdet's raises ``NotImplementedError`` on
    masks).

    Training: the masks get exactly the crop-and-paste of the image, and the
    same instances are kept as for the boxes (centre inside the crop, box
    inside the output after clipping). Bitmap and polygon masks both work.
    Test mode is mmdet's unchanged (padding only; masks are not touched,
    predictions are un-padded with the ``border`` meta).

    Args: as :class:`RandomCenterCropPad`.
    """

    def _train_aug(self, results: dict) -> dict:
        """Random crop and around-padding of the image, boxes and masks.

        Args:
            results (dict): The pipeline's results: ``img`` (H, W, 3)
                float32, ``gt_bboxes``, optionally ``gt_bboxes_labels``,
                ``gt_ignore_flags`` and ``gt_masks`` (H, W).

        Returns:
            dict: The same dict with the cropped-and-padded image, its
            ``img_shape`` and the kept, shifted annotations.
        """
        img = results['img']
        height, width = img.shape[:2]
        gt_bboxes = results['gt_bboxes']
        while True:
            scale = random.choice(self.ratios)
            new_h = int(self.crop_size[1] * scale)
            new_w = int(self.crop_size[0] * scale)
            h_border = self._get_border(self.border, height)
            w_border = self._get_border(self.border, width)
            for _ in range(50):
                center_x = random.randint(low=w_border, high=width - w_border)
                center_y = random.randint(low=h_border, high=height - h_border)
                cropped_img, border, patch = self._crop_image_and_paste(
                    img, [center_y, center_x], [new_h, new_w])
                if len(gt_bboxes) == 0:
                    results['img'] = cropped_img
                    results['img_shape'] = cropped_img.shape[:2]
                    if 'gt_masks' in results:
                        results['gt_masks'] = crop_and_paste_masks(
                            results['gt_masks'], patch, (new_h, new_w),
                            int(border[0]), int(border[2]))
                    return results
                centre_inside = self._filter_boxes(patch, gt_bboxes)
                if not centre_inside.any():
                    continue
                results['img'] = cropped_img
                results['img_shape'] = cropped_img.shape[:2]
                top, left = int(border[0]), int(border[2])
                boxes = gt_bboxes[centre_inside]
                boxes.translate_([left - patch[0], top - patch[1]])
                if self.bbox_clip_border:
                    boxes.clip_([new_h, new_w])
                keep = boxes.is_inside([new_h, new_w]).numpy()
                results['gt_bboxes'] = boxes[keep]
                for key in ('gt_ignore_flags', 'gt_bboxes_labels'):
                    if results.get(key) is not None:
                        results[key] = results[key][centre_inside][keep]
                if 'gt_masks' in results:
                    masks = results['gt_masks'][np.flatnonzero(
                        centre_inside)[keep]]
                    results['gt_masks'] = crop_and_paste_masks(
                        masks, patch, (new_h, new_w), top, left)
                if 'gt_seg_map' in results:
                    raise NotImplementedError(
                        f'{type(self).__name__} crops gt_masks but not '
                        'gt_seg_map; load annotations with with_seg=False')
                return results
