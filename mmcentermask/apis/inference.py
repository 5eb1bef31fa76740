"""Load a model once, then predict and draw images with it: what
``tools/demo.py`` and ``tools/web_demo.py`` share.

Both backends are MMDetection ``DetInferencer`` s, so an image is drawn by the
same ``DetLocalVisualizer`` call (masks, boxes, class names and scores above
the threshold) whichever script or backend runs it.
"""
import os.path as osp
import time
from typing import NamedTuple

import numpy as np
from mmdet.apis import DetInferencer
from mmdet.structures import DetDataSample
from mmengine.config import Config

from ..utils.cpu_memory import reuse_cpu_memory
from .panoptic_det_inferencer import PanopticDetInferencer

BACKENDS = ('pytorch', 'onnxruntime')


def backend_of(checkpoint: str) -> str:
    """``'onnxruntime'`` for an exported ``.onnx`` model, else
    ``'pytorch'``."""
    return ('onnxruntime'
            if checkpoint.lower().endswith('.onnx') else 'pytorch')


def with_bounded_drawing(cfg: Config) -> Config:
    """``cfg`` drawing through :class:`BoundedDetLocalVisualizer` (large
    pictures drawn downscaled) where it names MMDetection's
    ``DetLocalVisualizer``."""
    if cfg.get('visualizer', {}).get('type') in ('DetLocalVisualizer',
                                                 'mmdet.DetLocalVisualizer'):
        cfg.visualizer.type = 'BoundedDetLocalVisualizer'
    return cfg


def init_inferencer(config: str,
                    checkpoint: str,
                    device: str = 'cpu',
                    backend: str = 'pytorch',
                    show_progress: bool = False) -> DetInferencer:
    """Build the inferencer of a config and its weights.

    Args:
        config (str): Model config file.
        checkpoint (str): PyTorch checkpoint, or the ``.onnx`` file of
            ``tools/deployment/pytorch2onnx.py`` for ``'onnxruntime'``.
        device (str): ``'cpu'``, ``'cuda'``, ... (ONNX Runtime: CPU only).
            Defaults to ``'cpu'``.
        backend (str): One of :data:`BACKENDS`. Defaults to ``'pytorch'``.
        show_progress (bool): Progress bar over the inputs of a call.
            Defaults to False.

    Returns:
        DetInferencer: Model, test pipeline and visualizer (pictures
        larger than 3840 x 2160 are drawn downscaled:
        :class:`~mmcentermask.visualization.BoundedDetLocalVisualizer`);
        for PyTorch a :class:`PanopticDetInferencer`, which also writes
        panoptic predictions.

    Raises:
        FileNotFoundError: ``config`` or ``checkpoint`` does not exist.
        ImportError: ``'onnxruntime'`` without the onnxruntime package.
    """
    if backend not in BACKENDS:
        raise ValueError(
            f'unknown backend {backend!r}; choose one of {BACKENDS}')
    for what, path in (('config', config), ('checkpoint', checkpoint)):
        if not osp.isfile(path):
            raise FileNotFoundError(f'{what} file {path} does not exist')
    config = with_bounded_drawing(Config.fromfile(config))
    if backend == 'pytorch':
        if device == 'cpu':  # as ReuseCPUMemoryHook does in the runner
            reuse_cpu_memory()
        return PanopticDetInferencer(
            model=config,
            weights=checkpoint,
            device=device,
            show_progress=show_progress)
    try:
        from .ort_det_inferencer import ONNXRuntimeDetInferencer
    except ImportError as error:
        raise ImportError(
            f'the onnxruntime backend needs the onnxruntime package '
            f'({error}); install it with pip install onnxruntime') from error
    return ONNXRuntimeDetInferencer(
        model=config,
        weights=checkpoint,
        device=device,
        show_progress=show_progress)


class DrawnPrediction(NamedTuple):
    """One image's prediction, its picture and how long it took.

    Attributes:
        sample (DetDataSample): ``pred_instances`` of every detection the
            model kept (no score threshold): ``bboxes`` (n, 4) x1y1x2y2 in
            pixels of the original image, ``scores`` (n, ), ``labels``
            (n, ), ``masks`` (n, H, W) bool and, for CenterMask,
            ``mask_scores`` (n, ).
        drawing (ndarray): The image with the detections scoring above the
            threshold drawn, (H, W, 3) uint8 RGB.
        seconds (float): Inference time: reading the image, the test
            pipeline and the model with its post-processing (drawing
            excluded).
    """
    sample: DetDataSample
    drawing: np.ndarray
    seconds: float


def predict_and_draw(inferencer: DetInferencer, image: str,
                     score_thr: float) -> DrawnPrediction:
    """Predict one image file and draw it as ``tools/demo.py`` does.

    Args:
        inferencer (DetInferencer): From :func:`init_inferencer`.
        image (str): A readable image file.
        score_thr (float): Draw the detections scoring above this.

    Returns:
        DrawnPrediction: The prediction, the drawing and the time taken.
    """
    start = time.perf_counter()
    (_, batch), = inferencer.preprocess([image], batch_size=1)
    sample, = inferencer.forward(batch)
    seconds = time.perf_counter() - start
    drawing, = inferencer.visualize([image], [sample],
                                    return_vis=True,
                                    no_save_vis=True,
                                    pred_score_thr=score_thr)
    return DrawnPrediction(sample, drawing, seconds)
