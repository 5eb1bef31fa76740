"""Helpers of the config tests: load a config, build its model, make a tiny
packed batch (what ``PackDetInputs`` yields) and run one training step or a
prediction on it."""
import copy
import os.path as osp
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks, PolygonMasks
from mmdet.utils import register_all_modules
from mmengine.config import Config
from mmengine.structures import InstanceData
from torch import nn

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_ROOT = osp.join(REPO_ROOT, 'configs')

# Two overlapping GT objects of a 64 x 64 image, (x1, y1, x2, y2) in pixels
# (scaled for other sizes).
GT_BOXES = ((6., 8., 40., 44.), (22., 18., 60., 58.))


def load_config(path: str) -> Config:
    """``Config.fromfile`` with mmdet's scope and our modules registered."""
    register_all_modules()
    import mmcentermask  # noqa: F401  (registration)
    return Config.fromfile(path)


def build_model(model_cfg: dict, seed: int = 0) -> nn.Module:
    """Build a detector from its config dict with a fixed seed."""
    register_all_modules()
    import mmcentermask  # noqa: F401  (registration)
    torch.manual_seed(seed)
    return MODELS.build(copy.deepcopy(model_cfg))


def diamond(box: Sequence[float]) -> np.ndarray:
    """Polygon ``[x0, y0, ...]`` of the diamond inscribed in ``box``."""
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return np.array([cx, y1, x2, cy, cx, y2, x1, cy], dtype=np.float64)


def gt_masks(boxes: Sequence[Sequence[float]], size: Tuple[int, int],
             mask_type: str):
    """Diamond-shaped GT masks of ``boxes`` on an image of ``size`` (h, w).

    Args:
        mask_type (str): ``'polygon'`` (:obj:`PolygonMasks`, what the
            CenterMask pipelines load with ``poly2mask=False``) or
            ``'bitmap'`` (:obj:`BitmapMasks`, mmdet's default).
    """
    polygons = PolygonMasks([[diamond(box)] for box in boxes], *size)
    if mask_type == 'polygon':
        return polygons
    if mask_type == 'bitmap':
        return BitmapMasks(polygons.to_ndarray(), *size)
    raise ValueError(f'mask_type must be polygon or bitmap, got {mask_type}')


def make_batch(num_classes: int,
               sizes: Sequence[Tuple[int, int]] = ((64, 64), ),
               mask_type: str = 'polygon',
               seed: int = 0) -> Dict[str, list]:
    """A packed batch of random uint8 images with two GT instances each.

    Args:
        num_classes (int): The GT labels are ``0`` and ``num_classes - 1``.
        sizes (Sequence[tuple[int, int]]): (h, w) of each image; original
            size = resized size.
        mask_type (str): See :func:`gt_masks`.
        seed (int): Seed of the image pixels.

    Returns:
        dict: ``inputs`` (list of (3, h, w) uint8 tensors) and
        ``data_samples`` (list of :obj:`DetDataSample` with ``gt_instances``
        and the metas ``PackDetInputs`` sets).
    """
    generator = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for i, size in enumerate(sizes):
        scale_y, scale_x = size[0] / 64, size[1] / 64
        boxes = [[x1 * scale_x, y1 * scale_y, x2 * scale_x, y2 * scale_y]
                 for x1, y1, x2, y2 in GT_BOXES]
        inputs.append(
            torch.randint(
                0, 256, (3, *size), generator=generator, dtype=torch.uint8))
        sample = DetDataSample(
            metainfo=dict(
                img_id=i,
                img_path=f'img_{i}.jpg',
                ori_shape=size,
                img_shape=size,
                scale_factor=(1., 1.)))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor(boxes, dtype=torch.float32),
            labels=torch.tensor([0, num_classes - 1]),
            masks=gt_masks(boxes, size, mask_type))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def train_step(model: nn.Module, batch: dict) -> Dict[str, float]:
    """Loss forward and backward in train mode.

    Returns:
        dict[str, float]: Every loss of the model (summed per key as
        :meth:`BaseModel.parse_losses` does), after ``backward`` succeeded.
    """
    model.train()
    data = model.data_preprocessor(batch, True)
    losses = model(**data, mode='loss')
    loss, log_vars = model.parse_losses(losses)
    loss.backward()
    return {k: v.item() for k, v in log_vars.items() if k.startswith('loss')}


def predict(model: nn.Module, batch: dict) -> List[DetDataSample]:
    """``test_step`` in eval mode without gradients."""
    model.eval()
    with torch.no_grad():
        return model.test_step(batch)


def params_without_grad(model: nn.Module) -> List[str]:
    """Trainable parameters that the last backward did not reach (DDP
    needs ``find_unused_parameters=True`` for them)."""
    return [
        name for name, param in model.named_parameters()
        if param.requires_grad and param.grad is None
    ]


def non_finite_grads(model: nn.Module) -> List[str]:
    """Parameters whose gradient has a NaN or an infinity."""
    return [
        name for name, param in model.named_parameters()
        if param.grad is not None and not torch.isfinite(param.grad).all()
    ]


def assert_instance_predictions(results: List[DetDataSample],
                                num_classes: int,
                                max_per_img: int,
                                with_mask_scores: bool = True) -> None:
    """Every image has 1..max_per_img detections with (N, 4) boxes, finite
    scores, labels in [0, num_classes), (N, H, W) bool masks at
    ``ori_shape`` and, if ``with_mask_scores``, finite mask scores."""
    for result in results:
        pred = result.pred_instances
        keys = {'bboxes', 'scores', 'labels', 'masks'}
        if with_mask_scores:
            keys.add('mask_scores')
        assert keys <= set(pred.keys()), f'missing {keys - set(pred.keys())}'
        num = len(pred)
        assert 0 < num <= max_per_img, f'{num} detections'
        height, width = result.ori_shape
        assert pred.bboxes.shape == (num, 4)
        assert pred.masks.shape == (num, height, width)
        assert pred.masks.dtype == torch.bool
        assert pred.scores.shape == (num, )
        assert torch.isfinite(pred.scores).all()
        assert ((pred.labels >= 0) & (pred.labels < num_classes)).all()
        if with_mask_scores:
            assert pred.mask_scores.shape == (num, )
            assert torch.isfinite(pred.mask_scores).all()
