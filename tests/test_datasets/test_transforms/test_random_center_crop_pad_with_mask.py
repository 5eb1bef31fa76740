"""RandomCenterCropPadWithMask keeps masks and boxes consistent."""
import numpy as np
import pytest
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks, PolygonMasks

import mmcentermask  # noqa: F401  (registration)
from mmcentermask.datasets import make_image

TRAIN_CFG = dict(
    type='RandomCenterCropPadWithMask',
    crop_size=(96, 96),
    ratios=(0.6, 0.8, 1.0, 1.2),
    border=32,
    mean=[0, 0, 0],
    std=[1, 1, 1],
    to_rgb=True,
    test_pad_mode=None)


def shapes_results(seed, mask_type, size=(80, 112), num_shapes=4):
    """A shapes image as the loading transforms give it (float32 image,
    boxes, labels, ignore flags, bitmap or polygon masks). The boxes are
    the tight boxes of the rasterised masks, so boxes and masks agree
    exactly before the transform."""
    img, instances = make_image(
        np.random.default_rng(seed), size[0], size[1], num_shapes)
    polygons = PolygonMasks(
        [[np.array(p, np.float64) for p in i['segmentation']]
         for i in instances], *size)
    masks = (
        polygons if mask_type == 'polygon' else BitmapMasks(
            polygons.to_ndarray(), *size))
    boxes = np.array([mask_box(m) for m in polygons.to_ndarray()],
                     np.float32)
    return dict(
        img=img.astype(np.float32),
        img_shape=size,
        gt_bboxes=HorizontalBoxes(boxes.reshape(-1, 4)),
        gt_bboxes_labels=np.array([i['category_id'] - 1 for i in instances],
                                  np.int64),
        gt_ignore_flags=np.zeros(len(instances), bool),
        gt_masks=masks)


def mask_box(mask):
    """Tight (x1, y1, x2, y2) of a binary (H, W) mask, pixel edges."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])


@pytest.mark.parametrize('mask_type', ['bitmap', 'polygon'])
def test_cropped_masks_agree_with_cropped_boxes(mask_type):
    """Every kept mask lies in its box (within 1 px) and fills it exactly
    (within 1 px) unless the crop clipped the box."""
    transform = TRANSFORMS.build(TRAIN_CFG)
    checked_tight = 0
    for seed in range(8):
        np.random.seed(seed)
        results = transform(shapes_results(seed, mask_type))
        height, width = results['img_shape']
        masks = results['gt_masks']
        assert type(masks).__name__ == {
            'bitmap': 'BitmapMasks', 'polygon': 'PolygonMasks'}[mask_type]
        assert (masks.height, masks.width) == (height, width)
        assert results['img'].shape[:2] == (height, width)
        num = len(results['gt_bboxes'])
        assert num > 0
        assert len(masks) == len(results['gt_bboxes_labels']) == len(
            results['gt_ignore_flags']) == num
        # The copied image region (the rest is padding with value 0):
        # boxes are clipped to it, and a clipped box may be loose on every
        # side.
        content = mask_box(results['img'].any(axis=2))
        for mask, box in zip(masks.to_ndarray(),
                             results['gt_bboxes'].numpy()):
            if not mask.any():  # the visible part was cut away by the crop
                continue
            tight = mask_box(mask)
            assert (tight[:2] >= box[:2] - 1).all(), (seed, tight, box)
            assert (tight[2:] <= box[2:] + 1).all(), (seed, tight, box)
            if not (box == content).any():
                assert np.abs(tight - box).max() <= 1, (seed, tight, box)
                checked_tight += 1
    assert checked_tight >= 5


def test_masks_follow_the_image_pixels():
    """The masked pixels of the output carry the object's colour."""
    np.random.seed(3)
    results = shapes_results(3, 'bitmap')
    # Paint every object a distinct flat colour.
    for k, mask in enumerate(results['gt_masks'].masks):
        results['img'][mask.astype(bool)] = 10 * (k + 1)
    original = results['gt_masks'].masks.copy()
    out = TRANSFORMS.build(TRAIN_CFG)(results)
    assert len(out['gt_masks'])
    for mask in out['gt_masks'].masks:
        values = np.unique(out['img'][mask.astype(bool)])
        assert len(values) == 1 and values[0] in 10 * np.arange(
            1, len(original) + 1)


def test_image_without_objects_is_cropped_with_empty_masks():
    np.random.seed(0)
    results = shapes_results(0, 'bitmap', num_shapes=0)
    out = TRANSFORMS.build(TRAIN_CFG)(results)
    assert len(out['gt_masks']) == 0
    assert (out['gt_masks'].height, out['gt_masks'].width) == out['img_shape']


def test_test_mode_pads_and_records_the_border():
    transform = TRANSFORMS.build(
        dict(
            type='RandomCenterCropPadWithMask',
            crop_size=None,
            ratios=None,
            border=None,
            mean=[0, 0, 0],
            std=[1, 1, 1],
            to_rgb=True,
            test_mode=True,
            test_pad_mode=['logical_or', 31],
            test_pad_add_pix=1))
    results = shapes_results(1, 'bitmap', size=(70, 100))
    masks = results['gt_masks']
    out = transform(results)
    assert out['img_shape'] == (96, 128)
    top, bottom, left, right = out['border']
    assert (bottom - top, right - left) == (70, 100)
    assert out['gt_masks'] is masks
