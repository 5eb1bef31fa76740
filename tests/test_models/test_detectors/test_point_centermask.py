"""PointCenterMask: losses fall when overfitting one shapes image, predict
gives at most top-k boolean masks at the original size, empty GT, no
detections, tensor mode."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.config import Config

from repo_paths import REPO_ROOT
from detector_utils import batch

CONFIG = osp.join(
    REPO_ROOT, 'configs/centermask-point/'
    'centermask-point_vovnet-v2-19-slim-dw_ct-neck-32_1xb8-500i_shapes.py')
LOSSES = ('loss_center_heatmap', 'loss_wh', 'loss_offset', 'loss_mask',
          'loss_saliency')


@pytest.fixture
def model():
    register_all_modules()
    cfg = Config.fromfile(CONFIG).model
    cfg.bbox_head.shape_size = 8
    cfg.test_cfg.topk = 20
    torch.manual_seed(0)
    detector = MODELS.build(cfg)
    detector.init_weights()
    return detector


def test_no_foreground_class_is_refused_at_build():
    register_all_modules()
    cfg = Config.fromfile(CONFIG).model
    cfg.bbox_head.num_classes = 0
    with pytest.raises(ValueError,
                       match='PointCenterMask: num_classes=0, but it needs'):
        MODELS.build(cfg)


def test_all_losses_fall_when_overfitting_one_image(model):
    data = batch(model, [1])
    assert len(data['data_samples'][0].gt_instances) > 0
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    history = {name: [] for name in LOSSES}
    for _ in range(25):
        losses = model.loss(data['inputs'], data['data_samples'])
        assert set(losses) == set(LOSSES)
        for name in LOSSES:
            history[name].append(losses[name].item())
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    for name, values in history.items():
        first, last = np.mean(values[:3]), np.mean(values[-3:])
        assert np.isfinite(values).all(), name
        assert last < 0.8 * first, (name, values)


def test_image_without_annotations(model):
    model.train()
    data = batch(model, [3], num_shapes=0)
    assert len(data['data_samples'][0].gt_instances) == 0
    losses = model.loss(data['inputs'], data['data_samples'])
    assert set(losses) == set(LOSSES)
    assert losses['loss_mask'].item() == 0.0
    assert losses['loss_wh'].item() == 0.0
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()


def test_predict_gives_topk_boolean_masks_of_the_original_size(model):
    model.eval()
    data = batch(model, [5, 6], training=False, size=72)
    with torch.no_grad():
        results = model.predict(data['inputs'], data['data_samples'])
    for result in results:
        pred = result.pred_instances
        assert len(pred) == 20
        assert pred.masks.dtype == torch.bool
        assert pred.masks.shape == (20, 72, 72)
        assert pred.bboxes.shape == (20, 4)
        assert (pred.scores[:-1] >= pred.scores[1:]).all()
        assert ((pred.labels >= 0) & (pred.labels < 3)).all()


def test_no_detections_give_empty_results(model):
    model.eval()
    model.bbox_head.test_cfg['score_thr'] = 1.0
    data = batch(model, [4], training=False)
    with torch.no_grad():
        pred = model.predict(data['inputs'],
                             data['data_samples'])[0].pred_instances
    assert pred.bboxes.shape == (0, 4)
    assert pred.masks.shape == (0, 64, 64)


def test_tensor_mode_returns_the_five_branches(model):
    model.eval()
    data = batch(model, [5], training=False)
    with torch.no_grad():
        outs = model._forward(data['inputs'])
    assert [tuple(level[0].shape) for level in outs] == [(1, 3, 16, 16),
                                                         (1, 2, 16, 16),
                                                         (1, 2, 16, 16),
                                                         (1, 64, 16, 16),
                                                         (1, 3, 16, 16)]
