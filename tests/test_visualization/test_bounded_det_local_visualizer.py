"""BoundedDetLocalVisualizer: large pictures drawn downscaled, small ones
as MMDetection draws them."""
import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.visualization import DetLocalVisualizer
from mmengine.structures import InstanceData

from mmcentermask.visualization import BoundedDetLocalVisualizer
from mmcentermask.visualization.bounded_det_local_visualizer import \
    drawing_scale

META = dict(classes=('circle', 'rectangle', 'triangle'),
            palette=[(220, 20, 60), (0, 0, 142), (0, 160, 0)])


def sample(height: int, width: int, with_masks: bool = True):
    """Three detections on a height x width image; the last scores 0.1."""
    instances = InstanceData(
        bboxes=torch.tensor([[10., 20., 110., 80.], [150., 40., 250., 160.],
                             [5., 5., 50., 50.]]),
        scores=torch.tensor([0.9, 0.8, 0.1]),
        labels=torch.tensor([0, 1, 2]))
    if with_masks:
        masks = torch.zeros(3, height, width, dtype=torch.bool)
        for mask, (x1, y1, x2, y2) in zip(masks, instances.bboxes.long()):
            mask[y1:y2, x1:x2] = True
        instances.masks = masks
    data_sample = DetDataSample(metainfo=dict(img_shape=(height, width)))
    data_sample.pred_instances = instances
    return data_sample


def image(height: int, width: int) -> np.ndarray:
    return np.random.default_rng(0).integers(
        0, 255, (height, width, 3), dtype=np.uint8)


def draw(visualizer, height, width, data_sample):
    visualizer.dataset_meta = META
    visualizer.add_datasample(
        'x', image(height, width), data_sample, draw_gt=False,
        pred_score_thr=0.3)
    return visualizer.get_image()


def test_small_pictures_are_drawn_as_mmdetection_draws_them():
    ours = draw(BoundedDetLocalVisualizer(name='bounded_small'), 200, 300,
                sample(200, 300, with_masks=False))
    theirs = draw(DetLocalVisualizer(name='mmdet_small'), 200, 300,
                  sample(200, 300, with_masks=False))
    assert ours.shape == (200, 300, 3)
    np.testing.assert_array_equal(ours, theirs)


def test_large_pictures_are_drawn_downscaled_with_their_detections():
    visualizer = BoundedDetLocalVisualizer(
        name='bounded_large', max_pixels=150 * 100)
    original = sample(200, 300)
    drawn = draw(visualizer, 200, 300, original)
    assert drawn.shape == (100, 150, 3)
    scaled = visualizer.scaled_sample(original, 0.5, (100, 150), 0.3)
    instances = scaled.pred_instances
    assert instances.scores.tolist() == pytest.approx([0.9, 0.8])
    assert instances.bboxes.tolist() == [[5., 10., 55., 40.],
                                         [75., 20., 125., 80.]]
    assert instances.masks.shape == (2, 100, 150)
    assert instances.masks[0, 10:40, 5:55].all()
    assert instances.masks[0].sum() == 50 * 30
    # the input is left as it was
    assert original.pred_instances.masks.shape == (3, 200, 300)
    assert len(original.pred_instances) == 3


def test_drawing_scale():
    assert drawing_scale(2160, 3840, 3840 * 2160) == 1.
    assert drawing_scale(6000, 8000, 3840 * 2160) == pytest.approx(
        (3840 * 2160 / 48e6)**0.5)


def test_bad_max_pixels():
    with pytest.raises(ValueError, match='max_pixels'):
        BoundedDetLocalVisualizer(name='bounded_bad', max_pixels=0)
