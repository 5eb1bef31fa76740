"""Shared helpers of the deployment tests: models, export, and the
comparison of ONNX Runtime results with PyTorch's."""
import functools
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.utils import register_all_modules
from mmengine.config import Config
from mmengine.dataset import pseudo_collate

from mmcentermask.deploy import ONNXRuntimeCenterMask, export_onnx

REPO_ROOT = Path(__file__).resolve().parents[2]
GOLDEN_CONFIGS = {
    'lite_v19_slim_dw': 'configs/centermask/'
    'centermask-lite_vovnet-v2-19-slim-dw_fpn_ms-4x_coco.py',
    'v39': 'configs/centermask/centermask_vovnet-v2-39_fpn_ms-3x_coco.py',
}
#: the issue's parity tolerances
BOX_ATOL = 1e-3  # px, original image frame
#: A box corner is location + distance x stride: the float32 noise of the
#: regression output (ONNX Runtime's convolutions sum in another order than
#: oneDNN's, the more so since PyTorch runs channels-last on the CPU) grows
#: with the box. Coffee: V-39 1.17e-3 px on a box of ~600 px, Lite
#: 1.10e-3 px (7e-6 of the side) with channels-last (fidelity tests: the
#: same allowance, docs/fidelity.md).
BOX_RTOL_OF_SIDE = 2e-5
SCORE_ATOL = 1e-5  # box scores and mask scores
MASK_IOU_MIN = 0.99


@functools.lru_cache(maxsize=None)
def golden_model(variant: str) -> torch.nn.Module:
    """The golden centermask2 weights, converted, in our model (eval)."""
    from golden_utils import golden_state_dict

    from mmcentermask.converters import (build_target_model,
                                         convert_centermask2)
    config = str(REPO_ROOT / GOLDEN_CONFIGS[variant])
    model = build_target_model(config)
    conversion = convert_centermask2(
        golden_state_dict(variant), config, target=model.state_dict())
    model.load_state_dict(conversion.state_dict, strict=True)
    return model.eval()


def build_model(cfg: Config, seed: int = 0) -> torch.nn.Module:
    """``cfg.model`` with seeded random weights, in eval mode."""
    register_all_modules()
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model.eval()


def export(model: torch.nn.Module, cfg: Config, path: Path,
           shape=(128, 128), dynamic: bool = True) -> ONNXRuntimeCenterMask:
    """Export ``model`` and open it in a 2-thread runner."""
    export_onnx(model, str(path), shape, dynamic=dynamic)
    return ONNXRuntimeCenterMask(cfg, str(path), num_threads=2)


def pytorch_and_onnx(model: torch.nn.Module, runner: ONNXRuntimeCenterMask,
                     images: List) -> List[tuple]:
    """(PyTorch sample, ONNX Runtime sample) per image, both from the
    runner's test pipeline."""
    pairs = []
    for image in images:
        data = pseudo_collate([runner._load(image)])
        with torch.no_grad():
            ours = model.test_step(data)[0]
        pairs.append((ours, runner.predict(pseudo_collate(
            [runner._load(image)]))[0]))
    return pairs


def match_boxes(ref_boxes: np.ndarray, ref_labels: np.ndarray,
                boxes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Index into ``boxes`` of every reference box: same class and the
    closest box, one to one (the order may differ on exact score ties).
    Fails if the sets differ."""
    assert len(ref_boxes) == len(boxes), (
        f'{len(boxes)} ONNX Runtime detections, PyTorch {len(ref_boxes)}')
    cost = np.abs(ref_boxes.astype(np.float64)[:, None] -
                  boxes.astype(np.float64)[None]).max(-1)
    cost[ref_labels[:, None] != labels[None]] = np.inf
    index = np.full(len(ref_boxes), -1)
    for flat in np.argsort(cost, axis=None):
        i, j = np.unravel_index(flat, cost.shape)
        if not np.isfinite(cost[i, j]):
            break
        if index[i] < 0 and j not in index:
            index[i] = j
    missing = np.nonzero(index < 0)[0]
    assert len(missing) == 0, (
        f'PyTorch detections {missing.tolist()} have no same-class ONNX '
        'Runtime detection')
    return index


def match(reference: DetDataSample, onnx: DetDataSample) -> np.ndarray:
    """:func:`match_boxes` of two samples' ``pred_instances``."""
    ref, ort = reference.pred_instances, onnx.pred_instances
    return match_boxes(ref.bboxes.numpy(), ref.labels.numpy(),
                       ort.bboxes.numpy(), ort.labels.numpy())


def compare(reference: DetDataSample,
            onnx: DetDataSample,
            box_rtol_of_side: float = 0.) -> Dict[str, float]:
    """Assert the issue's parity and return the measured differences:
    ``boxes`` (px), ``boxes_rel_side`` (relative to the box's longer side),
    ``scores``, ``mask_scores`` (max abs), ``mask_iou`` (smallest IoU of the
    pasted masks), ``detections``. Box coordinates may differ by
    ``BOX_ATOL + box_rtol_of_side x side``."""
    index = match(reference, onnx)
    ref, ort = reference.pred_instances, onnx.pred_instances[index]
    measured = dict(detections=len(ref), boxes=0., boxes_rel_side=0.,
                    scores=0., mask_scores=0., mask_iou=1.)
    if len(ref) == 0:
        assert ort.masks.shape == ref.masks.shape
        return measured
    for field in ('bboxes', 'scores', 'mask_scores'):
        diff = (getattr(ref, field).double() -
                getattr(ort, field).double()).abs().max().item()
        measured['boxes' if field == 'bboxes' else field] = diff
    box_diff = (ref.bboxes.double() - ort.bboxes.double()).abs()
    sides = (ref.bboxes[:, 2:] - ref.bboxes[:, :2]).double().max(1)[0]
    measured['boxes_rel_side'] = (box_diff /
                                  sides.clamp(min=1)[:, None]).max().item()
    box_excess = box_diff - BOX_ATOL - box_rtol_of_side * sides[:, None]
    inter = (ref.masks & ort.masks).flatten(1).sum(1).double()
    union = (ref.masks | ort.masks).flatten(1).sum(1).double()
    ious = torch.where(union > 0, inter / union.clamp(min=1), 1.)
    measured['mask_iou'] = ious.min().item()
    assert ort.masks.shape == ref.masks.shape
    assert box_excess.max() <= 0, measured
    assert measured['scores'] <= SCORE_ATOL, measured
    assert measured['mask_scores'] <= SCORE_ATOL, measured
    assert measured['mask_iou'] >= MASK_IOU_MIN, measured
    return measured
