"""The two operators written by hand into the graph: ONNX Runtime's
NonMaxSuppression and RoiAlign against mmcv's kernels that the PyTorch model
uses."""
import numpy as np
import onnxruntime
import pytest
import torch
from mmcv.ops import batched_nms
from mmcv.ops import roi_align as mmcv_roi_align
from torch import nn

from mmcentermask.deploy.onnx_ops import non_max_suppression, roi_align


class NMSModule(nn.Module):

    def __init__(self, iou_threshold: float) -> None:
        super().__init__()
        self.iou_threshold = iou_threshold

    def forward(self, boxes, scores):
        return non_max_suppression(boxes, scores, 1000, self.iou_threshold,
                                   -0.5)


class RoiAlignModule(nn.Module):

    def __init__(self, scale: float, sampling_ratio: int,
                 aligned: bool) -> None:
        super().__init__()
        self.scale, self.sampling_ratio = scale, sampling_ratio
        self.aligned = aligned

    def forward(self, features, boxes, batch_indices):
        return roi_align(features, boxes, batch_indices, (7, 7), self.scale,
                         self.sampling_ratio, self.aligned)


def run_onnx(module: nn.Module, inputs: tuple, path) -> list:
    torch.onnx.export(
        module,
        inputs,
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=[f'input{i}' for i in range(len(inputs))],
        dynamic_axes={f'input{i}': {0: 'n'}
                      for i in range(len(inputs))})
    session = onnxruntime.InferenceSession(
        str(path), providers=['CPUExecutionProvider'])
    return session.run(
        None, {f'input{i}': t.numpy()
               for i, t in enumerate(inputs)})


def random_boxes(generator: torch.Generator, count: int) -> torch.Tensor:
    """Clustered boxes (many overlaps), some of zero width."""
    xy = torch.rand(count, 2, generator=generator) * 60
    wh = torch.rand(count, 2, generator=generator) * 30
    wh[::7, 0] = 0
    return torch.cat([xy, xy + wh], 1)


@pytest.mark.parametrize('iou_threshold', [0.3, 0.6])
def test_nms_matches_mmcv_per_class(tmp_path, iou_threshold):
    generator = torch.Generator().manual_seed(0)
    boxes = random_boxes(generator, 300)
    scores = torch.rand(300, generator=generator)
    labels = torch.randint(0, 4, (300, ), generator=generator)
    class_scores = torch.where(labels[None] == torch.arange(4)[:, None],
                               scores[None], torch.tensor(-1.))
    ours = non_max_suppression(boxes[None], class_scores[None], 1000,
                               iou_threshold, -0.5)
    onnx = run_onnx(
        NMSModule(iou_threshold), (boxes[None], class_scores[None]),
        tmp_path / 'nms.onnx')[0]
    expected = set()
    for label in range(4):
        inds = (labels == label).nonzero().view(-1)
        _, keep = batched_nms(boxes[inds], scores[inds], labels[inds],
                              dict(type='nms', iou_threshold=iou_threshold))
        expected |= {(label, int(i)) for i in inds[keep]}
    assert {(int(c), int(i)) for _, c, i in ours} == expected
    assert {(int(c), int(i)) for _, c, i in onnx} == expected
    assert 0 < len(expected) < 300  # the NMS did suppress, not everything


def test_nms_without_boxes(tmp_path):
    boxes, scores = torch.zeros(1, 5, 4), torch.full((1, 3, 5), -1.)
    assert non_max_suppression(boxes, scores, 10, 0.5, -0.5).shape == (0, 3)


@pytest.mark.parametrize('aligned,sampling_ratio', [(True, 0), (False, 2),
                                                    (False, 0)])
def test_roi_align_matches_mmcv(tmp_path, aligned, sampling_ratio):
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(1, 4, 16, 20, generator=generator)
    boxes = random_boxes(generator, 20) * 2 - 10  # some outside the map
    boxes[0] = torch.tensor([3., 4., 3.4, 4.2])  # under one feature pixel
    batch_indices = torch.zeros(20, dtype=torch.long)
    rois = torch.cat([batch_indices[:, None].float(), boxes], 1)
    expected = mmcv_roi_align(features, rois, (7, 7), 0.25, sampling_ratio,
                              'avg', aligned)
    module = RoiAlignModule(0.25, sampling_ratio, aligned)
    onnx = run_onnx(module, (features, boxes, batch_indices),
                    tmp_path / 'roi_align.onnx')[0]
    np.testing.assert_allclose(
        module(features, boxes, batch_indices), expected, atol=0)
    np.testing.assert_allclose(onnx, expected.numpy(), atol=1e-5)
