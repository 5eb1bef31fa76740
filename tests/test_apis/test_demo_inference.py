"""mmcentermask.apis.inference: the backend by file name, clear errors for
missing files, one image predicted and drawn with the threshold applied to
the drawing only."""
import json

import cv2
import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.config import Config

from repo_paths import REPO_ROOT
from detector_utils import TINY_MODEL_LINES
from mmcentermask.apis import backend_of, init_inferencer, predict_and_draw
from mmcentermask.datasets import make_image

QUICK_START = str(REPO_ROOT) + ('/configs/centermask/centermask-lite_'
                                'vovnet-v2-19-slim-dw_fpn-64_1xb8-1600i_'
                                'shapes.py')
TINY = """
_base_ = {base!r}
{tiny_model}test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(96, 64), keep_ratio=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape',
                                          'img_shape', 'scale_factor'))]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
"""


def test_backend_of_file_name():
    assert backend_of('model.onnx') == 'onnxruntime'
    assert backend_of('MODEL.ONNX') == 'onnxruntime'
    assert backend_of('iter_1600.pth') == 'pytorch'


def test_missing_files_and_unknown_backend_are_named(tmp_path):
    config = tmp_path / 'model.py'
    config.write_text('')
    with pytest.raises(FileNotFoundError, match='checkpoint file .*nope.pth'):
        init_inferencer(str(config), str(tmp_path / 'nope.pth'))
    with pytest.raises(FileNotFoundError, match='config file .*none.py'):
        init_inferencer(str(tmp_path / 'none.py'), str(config))
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'"):
        init_inferencer(str(config), str(config), backend='tensorrt')


def test_onnxruntime_backend_refuses_other_devices(tmp_path):
    from mmcentermask.apis.ort_det_inferencer import ONNXRuntimeDetInferencer
    with pytest.raises(ValueError, match='runs on the CPU.*--device cpu'):
        ONNXRuntimeDetInferencer('model.py', 'model.onnx', device='cuda')


def test_predict_and_draw_one_image(tmp_path):
    config = tmp_path / 'tiny.py'
    config.write_text(
        TINY.format(tiny_model=TINY_MODEL_LINES, base=QUICK_START))
    register_all_modules()
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(str(config)).model)
    model.init_weights()
    checkpoint = tmp_path / 'tiny.pth'
    torch.save(
        dict(
            state_dict=model.state_dict(),
            meta=dict(dataset_meta=dict(classes=('a', 'b', 'c')))), checkpoint)
    image, _ = make_image(np.random.default_rng(0), 48, 64, 2)
    path = str(tmp_path / 'image.png')
    cv2.imwrite(path, image[..., ::-1])

    inferencer = init_inferencer(str(config), str(checkpoint))
    everything = predict_and_draw(inferencer, path, score_thr=0.0)
    nothing = predict_and_draw(inferencer, path, score_thr=1.0)
    assert everything.seconds > 0
    instances = everything.sample.pred_instances
    assert len(instances) > 0 and instances.masks.shape[1:] == (48, 64)
    # the threshold only chooses what is drawn: all detections are returned
    assert len(nothing.sample.pred_instances) == len(instances)
    np.testing.assert_array_equal(nothing.drawing, image)
    assert everything.drawing.shape == image.shape
    assert (everything.drawing != image).any()


PANOPTIC_SHAPES = str(REPO_ROOT) + (
    '/configs/centermask-panoptic/panoptic-centermask-lite_vovnet-v2-19-'
    'slim-dw_fpn-64_1xb8-1600i_shapes.py')


def test_panoptic_predictions_are_written_without_panopticapi(tmp_path):
    """MMDetection's DetInferencer raises for any panoptic prediction
    without panopticapi; ours writes the COCO-format PNG and the JSON."""
    from mmcentermask.datasets import CLASSES, STUFF_CLASSES
    from mmcentermask.evaluation.functional import rgb2id
    register_all_modules()
    torch.manual_seed(0)
    cfg = Config.fromfile(PANOPTIC_SHAPES)
    cfg.model.test_cfg.fcos.score_thr = 0.
    cfg.model.test_cfg.panoptic.score_thr = 0.
    config = tmp_path / 'panoptic.py'
    cfg.dump(str(config))
    model = MODELS.build(cfg.model)
    model.init_weights()
    checkpoint = tmp_path / 'panoptic.pth'
    torch.save(
        dict(
            state_dict=model.state_dict(),
            meta=dict(
                dataset_meta=dict(
                    classes=CLASSES + STUFF_CLASSES,
                    thing_classes=CLASSES,
                    stuff_classes=STUFF_CLASSES))), checkpoint)
    image, _ = make_image(np.random.default_rng(0), 48, 64, 2)
    path = str(tmp_path / 'image.png')
    cv2.imwrite(path, image[..., ::-1])

    inferencer = init_inferencer(str(config), str(checkpoint))
    out_dir = tmp_path / 'out'
    inferencer(
        path, out_dir=str(out_dir), no_save_vis=True, no_save_pred=False)
    result = json.loads((out_dir / 'preds' / 'image.json').read_text())
    assert result['panoptic_seg_path'] == str(
        out_dir / 'panoptic' / 'image_panoptic_seg.png')
    ids = rgb2id(cv2.imread(result['panoptic_seg_path'])[..., ::-1])
    assert ids.shape == (48, 64)
    labels = np.unique(ids[ids > 0] % 1000)
    assert ((labels >= 0) & (labels < len(CLASSES + STUFF_CLASSES))).all()
    drawn = predict_and_draw(inferencer, path, score_thr=0.)
    assert 'pred_panoptic_seg' in drawn.sample
    assert drawn.drawing.shape == image.shape
