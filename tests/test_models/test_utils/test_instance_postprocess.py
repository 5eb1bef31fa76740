"""The output frame: box mapping, clipping, pasting and the whole
post-processing of one image."""
import pytest
import torch
from mmengine.structures import InstanceData

from mmcentermask.models.utils import (clip_to_canvas, output_canvas_shape,
                                       paste_masks, postprocess_instances,
                                       to_input_frame, to_output_frame)


def test_canvas_shape_original_or_network_input():
    meta = dict(ori_shape=(100, 150), scale_factor=(1.5, 1.6))
    assert output_canvas_shape(meta, rescale=True) == (100, 150)
    assert output_canvas_shape(meta, rescale=False) == (160, 225)


def test_frames_are_inverse_and_multiply_by_the_reciprocal():
    boxes = torch.tensor([[10., 20., 30., 40.]])
    scale = (2.0, 4.0)
    original = to_output_frame(boxes, scale)
    assert original.tolist() == [[5., 5., 15., 10.]]
    torch.testing.assert_close(to_input_frame(original, scale), boxes)
    assert original.data_ptr() != boxes.data_ptr()


def test_clip_flags_empty_boxes():
    boxes = torch.tensor([[-5., -5., 20., 20.], [60., 10., 70., 20.],
                          [10., 10., 10., 30.]])
    clipped, keep = clip_to_canvas(boxes, (40, 50))
    assert clipped.tolist()[0] == [0., 0., 20., 20.]
    assert clipped.tolist()[1] == [50., 10., 50., 20.]
    assert keep.tolist() == [True, False, False]


@pytest.mark.parametrize('threshold, dtype', [(0.5, torch.bool),
                                              (-1, torch.uint8)])
def test_paste_fills_the_box(threshold, dtype):
    probs = torch.ones(1, 28, 28)
    masks = paste_masks(probs, torch.tensor([[10., 5., 30., 25.]]), (40, 50),
                        threshold)
    assert masks.shape == (1, 40, 50) and masks.dtype == dtype
    inside = masks[0, 5:25, 10:30]
    assert bool((inside > 0).all())
    assert int((masks[0] > 0).sum()) == 400


def test_paste_nothing_gives_empty_canvas():
    masks = paste_masks(torch.zeros(0, 28, 28), torch.zeros(0, 4), (7, 9), 0.5)
    assert masks.shape == (0, 7, 9) and masks.dtype == torch.bool


@pytest.mark.parametrize('clip_boxes', [True, False])
def test_postprocess_rescales_clips_and_drops(clip_boxes):
    detections = InstanceData(
        bboxes=torch.tensor([[-20., 0., 40., 40.], [200., 0., 220., 10.]]),
        scores=torch.tensor([0.9, 0.8]),
        labels=torch.tensor([1, 2]))
    result = postprocess_instances(
        detections,
        torch.ones(2, 28, 28),
        torch.tensor([0.5, 0.4]), (20, 50), (2., 2.),
        clip_boxes=clip_boxes,
        mask_thr_binary=0.5)
    if clip_boxes:
        assert result.bboxes.tolist() == [[0., 0., 20., 20.]]
        assert result.mask_scores.tolist() == [0.5]
        assert result.labels.tolist() == [1]
        assert int(result.masks.sum()) == 400
    else:
        assert result.bboxes.tolist() == [[-10., 0., 20., 20.],
                                          [100., 0., 110., 5.]]
        assert len(result) == 2
    assert result.masks.shape[1:] == (20, 50)
    assert detections.bboxes[0, 0] == -20.  # input not modified


def test_postprocess_boxes_already_on_canvas():
    detections = InstanceData(
        bboxes=torch.tensor([[1., 1., 5., 5.]]),
        scores=torch.tensor([1.]),
        labels=torch.tensor([0]))
    result = postprocess_instances(
        detections,
        torch.ones(1, 28, 28),
        torch.tensor([1.]), (10, 10),
        None,
        clip_boxes=True,
        mask_thr_binary=0.5)
    assert result.bboxes.tolist() == [[1., 1., 5., 5.]]
