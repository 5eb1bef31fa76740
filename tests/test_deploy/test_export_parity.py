"""ONNX Runtime against PyTorch on tiny random-weight CenterMask models:
same detections at the export size, at another size (dynamic axes), none on
an image without detections; fixed-size exports; what cannot be exported."""

import warnings

import mmcv
import numpy as np
import onnxruntime
import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.config import Config

from deploy_utils import REPO_ROOT, build_model, compare, export
from detector_utils import sample, tiny_cfg
from mmcentermask.datasets import make_image
from mmcentermask.deploy import (CenterMaskExportModule,
                                 ONNXRuntimeCenterMask, check_exportable,
                                 export_onnx)

LITE = REPO_ROOT / ('configs/centermask/'
                    'centermask-lite_vovnet-v2-19-slim-dw_fpn_ms-4x_coco.py')


def tiny_config() -> Config:
    """The Lite config with the 32-channel tiny model of the model tests."""
    cfg = Config.fromfile(str(LITE))
    cfg.model = tiny_cfg()
    return cfg


def tiny_model(cfg: Config, cls_bias: float = -1.) -> torch.nn.Module:
    """Seeded random weights whose class scores are spread out (distinct
    scores, so that the NMS decisions do not hinge on float noise) and
    centred on ``sigmoid(cls_bias)``."""
    model = build_model(cfg)
    head = model.bbox_head
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        head.conv_cls.weight.normal_(0, 0.2, generator=generator)
        head.conv_cls.bias.fill_(cls_bias)
    return model


def batch(size: int, seed: int = 1) -> dict:
    """A packed shapes image of ``size`` x ``size`` px (no resizing)."""
    image, data_sample = sample(seed, size=size)
    return dict(inputs=[image], data_samples=[data_sample])


def predict_both(model, runner, size: int, seed: int = 1):
    with torch.no_grad():
        reference = model.test_step(batch(size, seed))[0]
    return reference, runner.predict(batch(size, seed))[0]


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    cfg = tiny_config()
    model = tiny_model(cfg)
    path = tmp_path_factory.mktemp('onnx') / 'tiny.onnx'
    return model, export(model, cfg, path, shape=(96, 96), dynamic=True)


def test_export_module_gives_pytorch_detections():
    cfg = tiny_config()
    model = tiny_model(cfg)
    data = model.data_preprocessor(batch(96), False)
    with torch.no_grad():
        boxes, scores, labels, probs, mask_scores = CenterMaskExportModule(
            model)(data['inputs'], torch.tensor([96, 96]))
        expected = model.bbox_head.predict(
            model.extract_feat(data['inputs']), data['data_samples'])[0]
    assert len(expected) == 50
    torch.testing.assert_close(boxes, expected.bboxes, atol=0, rtol=0)
    torch.testing.assert_close(scores, expected.scores, atol=0, rtol=0)
    assert labels.tolist() == expected.labels.tolist()
    assert probs.shape == (50, 28, 28) and mask_scores.shape == (50, )


@pytest.mark.parametrize('size', [96, 160])
def test_onnx_runtime_equals_pytorch(tiny, size):
    """96: the export size; 160: another size through the dynamic axes."""
    model, runner = tiny
    reference, onnx = predict_both(model, runner, size)
    measured = compare(reference, onnx)
    # 50 detections, some dropped after clipping to the image
    assert measured['detections'] > 25
    assert onnx.pred_instances.masks.shape[1:] == (size, size)


def test_image_without_detections(tmp_path):
    cfg = tiny_config()
    model = tiny_model(cfg, cls_bias=-30.)
    runner = export(model, cfg, tmp_path / 'empty.onnx', shape=(64, 64))
    data = model.data_preprocessor(batch(96), False)
    outputs = runner.run(data['inputs'], (96, 96))
    assert [o.shape for o in outputs] == [(0, 4), (0, ), (0, ), (0, 28, 28),
                                          (0, )]
    reference, onnx = predict_both(model, runner, 96)
    assert len(reference.pred_instances) == 0
    result = onnx.pred_instances
    assert len(result) == 0
    assert result.masks.shape == (0, 96, 96)
    assert result.bboxes.shape == (0, 4) and result.mask_scores.shape == (0, )


def test_fixed_size_export_pads_smaller_inputs(tmp_path):
    cfg = tiny_config()
    model = tiny_model(cfg)
    with pytest.warns(UserWarning, match='fixed 96x128 input'):
        runner = export(
            model, cfg, tmp_path / 'fixed.onnx', shape=(96, 128),
            dynamic=False)
    assert runner.fixed_size == (96, 128)
    # PyTorch on the same image zero-padded to the export size
    data = model.data_preprocessor(batch(96), False)
    padded = torch.nn.functional.pad(data['inputs'], (0, 32))
    with torch.no_grad():
        expected = CenterMaskExportModule(model)(padded,
                                                 torch.tensor([96, 96]))
    with pytest.warns(UserWarning, match='96x96 as PyTorch pads it'):
        outputs = runner.run(data['inputs'], (96, 96))
    np.testing.assert_allclose(outputs[0], expected[0], atol=1e-3)
    np.testing.assert_allclose(outputs[1], expected[1], atol=1e-5)
    with pytest.raises(ValueError, match='exported for a fixed 96x128'):
        runner.run(torch.zeros(1, 3, 128, 128), (128, 128))


def rectangle_batch(height: int, width: int, seed: int = 1) -> dict:
    """A packed shapes image of ``height`` x ``width`` px (no resizing)."""
    image, _ = make_image(np.random.default_rng(seed), height, width, 3)
    meta = dict(img_shape=(height, width), ori_shape=(height, width),
                scale_factor=(1., 1.))
    return dict(
        inputs=[torch.from_numpy(image).permute(2, 0, 1).contiguous()],
        data_samples=[DetDataSample(metainfo=meta)])


def pytorch_and_onnx(model, runner, height: int, width: int):
    with torch.no_grad():
        reference = model.test_step(rectangle_batch(height, width))[0]
    return reference, runner.predict(rectangle_batch(height, width))[0]


def test_default_export_gives_pytorch_results_at_any_aspect_ratio(tmp_path):
    """Exported at a square size, run on a 64 x 160 image: no padding
    beyond PyTorch's, no warning, PyTorch's detections."""
    cfg = tiny_config()
    model = tiny_model(cfg)
    path = str(tmp_path / 'default.onnx')
    with warnings.catch_warnings():
        warnings.simplefilter('error', UserWarning)
        export_onnx(model, path, (96, 96))
        runner = ONNXRuntimeCenterMask(cfg, path, num_threads=2)
        reference, onnx = pytorch_and_onnx(model, runner, 64, 160)
    assert runner.fixed_size is None
    assert compare(reference, onnx)['detections'] > 10


def test_fixed_export_warns_once_naming_the_sizes(tmp_path):
    """A fixed export says that other padded sizes change the results when
    it is made and when an image first needs the extra padding; an image of
    exactly the export size gets PyTorch's results, without a warning."""
    cfg = tiny_config()
    model = tiny_model(cfg)
    path = str(tmp_path / 'fixed.onnx')
    with pytest.warns(UserWarning, match='takes a fixed 96x160 input'):
        export_onnx(model, path, (96, 160), dynamic=False)
    runner = ONNXRuntimeCenterMask(cfg, path, num_threads=2)
    with pytest.warns(UserWarning) as record:
        runner.predict(rectangle_batch(64, 96))
    message = str(record[0].message)
    assert 'this image, 64x96 as PyTorch pads it, is zero-padded to 96x160' \
        in message
    assert 'GroupNorm' in message and 'Export without --shape' in message
    with warnings.catch_warnings():
        warnings.simplefilter('error', UserWarning)
        runner.predict(rectangle_batch(64, 96))
        exact = ONNXRuntimeCenterMask(cfg, path, num_threads=2)
        reference, onnx = pytorch_and_onnx(model, exact, 96, 160)
    assert compare(reference, onnx)['detections'] > 10


class RoIPooling(torch.nn.Module):
    """The graph's RoI pooling (level rule, minimum extent, ``RoiAlign``) of
    an export module, for boxes of a 128 x 128 image."""

    def __init__(self, export_module: CenterMaskExportModule) -> None:
        super().__init__()
        self.export_module = export_module

    def forward(self, p3, p4, p5, boxes):
        labels = torch.zeros_like(boxes[:, 0], dtype=torch.long)
        return self.export_module._pool((p3, p4, p5), boxes, labels,
                                        torch.tensor([128, 128]))


@pytest.mark.filterwarnings('ignore::torch.jit.TracerWarning')
def test_empty_box_in_onnx_runtime_pools_as_a_hair_wide_box_in_pytorch(
        tmp_path):
    """The knife edge between runtimes: a ReLU'd regression of exactly 0
    in ONNX Runtime (an empty box) and of 3e-4 px in PyTorch. Both pool the
    line the box lies on (``min_roi_size``), not zeros against features."""
    model = tiny_model(tiny_config())
    generator = torch.Generator().manual_seed(0)
    feats = [
        torch.randn(1, 32, 128 // s, 128 // s, generator=generator)
        for s in (8, 16, 32)
    ]
    empty = torch.tensor([[36., 10., 36., 40.], [20., 52., 60., 52.]])
    hair = torch.tensor([[35.99968, 10., 36., 40.],
                         [20., 52., 60., 52.0003]])
    path = str(tmp_path / 'pool.onnx')
    torch.onnx.export(
        RoIPooling(CenterMaskExportModule(model)), (*feats, empty),
        path,
        dynamo=False,
        opset_version=17,
        input_names=['p3', 'p4', 'p5', 'boxes'])
    session = onnxruntime.InferenceSession(
        path, providers=['CPUExecutionProvider'])
    feed = {f'p{level}': f.numpy() for level, f in zip((3, 4, 5), feats)}
    onnx_empty = session.run(None, dict(feed, boxes=empty.numpy()))[0]
    rois = torch.cat([torch.zeros(2, 1), hair], 1)
    with torch.no_grad():
        pytorch_hair = model.roi_head.mask_roi_extractor(
            feats, rois, batch_img_metas=[dict(img_shape=(128, 128))])
    assert np.abs(onnx_empty).reshape(2, -1).max(1).min() > 0.1
    np.testing.assert_allclose(
        onnx_empty, pytorch_hair.numpy(), rtol=0, atol=1e-3)


def test_dcn_config_is_refused_naming_the_op():
    cfg = Config.fromfile(
        str(REPO_ROOT / 'configs/centermask/'
            'centermask_vovnet-v2-39-dcn_fpn_ms-3x_coco.py'))
    model = build_model(cfg)
    with pytest.raises(NotImplementedError,
                       match='deformable convolution.*ModulatedDeformConv2d'):
        check_exportable(model)


def test_panoptic_model_is_refused_naming_what_it_would_drop():
    from mmdet.registry import MODELS
    from panoptic_utils import tiny_panoptic_cfg
    model = MODELS.build(tiny_panoptic_cfg())
    with pytest.raises(NotImplementedError,
                       match='PanopticCenterMask .* would drop the semantic'):
        check_exportable(model)


def test_opset_below_16_is_refused(tmp_path):
    cfg = tiny_config()
    with pytest.raises(ValueError, match='opset >= 16'):
        export_onnx(tiny_model(cfg), str(tmp_path / 'x.onnx'), (64, 64),
                    opset=13)


def test_runner_returns_samples_from_paths(tiny, tmp_path):
    """The inference pipeline path (``infer``): file and array inputs."""
    _, runner = tiny
    image, _ = make_image(np.random.default_rng(3), 120, 90, 3)
    path = str(tmp_path / 'image.png')
    mmcv.imwrite(image, path)
    from_file, from_array = runner.infer([path, image])
    for result in (from_file, from_array):
        assert result.pred_instances.masks.shape[1:] == (120, 90)
        assert result.ori_shape == (120, 90)
    torch.testing.assert_close(from_file.pred_instances.scores,
                               from_array.pred_instances.scores)
