"""Inference helpers of the demos: build a model's inferencer once, predict
and draw an image, write its detections as COCO JSON.

``ONNXRuntimeDetInferencer`` (module ``ort_det_inferencer``) is imported by
:func:`init_inferencer` on demand: it needs ``onnxruntime``.
"""
from .coco_json import coco_json
from .inference import (BACKENDS, DrawnPrediction, backend_of, init_inferencer,
                        predict_and_draw)
from .panoptic_det_inferencer import PanopticDetInferencer

__all__ = [
    'BACKENDS', 'DrawnPrediction', 'backend_of', 'coco_json',
    'init_inferencer', 'PanopticDetInferencer', 'predict_and_draw'
]
