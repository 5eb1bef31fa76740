"""Benchmark building blocks, and the counted property of the inference
path: one post-backbone pass of CenterMask-Lite dispatches no more ATen ops
than MMDetection's Mask R-CNN with the same backbone and the same number of
final masks (50), in both NMS modes."""
import os.path as osp

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.config import Config

from mmcentermask.utils.benchmark import (anchor_sized_boxes, count_aten_ops,
                                          heads_pass, make_data,
                                          mask_rcnn_model_cfg,
                                          set_post_processing)

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
LITE = osp.join(REPO_ROOT, 'configs', 'centermask',
                'centermask-lite_vovnet-v2-19-slim-dw_fpn_ms-4x_coco.py')
SIZE = (256, 320)
MASKS = 50


def build(model_cfg, centermask: bool):
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    model.init_weights()
    if centermask:
        anchor_sized_boxes(model)
    return model.eval()


@pytest.fixture(scope='module')
def mask_rcnn_ops():
    register_all_modules()
    cfg = Config.fromfile(LITE)
    model_cfg = mask_rcnn_model_cfg(cfg)
    set_post_processing(model_cfg, 0., MASKS)
    run = heads_pass(build(model_cfg, False), make_data(SIZE))
    assert len(run()[0].masks) == MASKS
    return count_aten_ops(run)[0]


@pytest.mark.parametrize('nms_mode', ['auto', 'batched'])
def test_centermask_dispatches_fewer_ops_than_mask_rcnn(
        mask_rcnn_ops, nms_mode):
    cfg = Config.fromfile(LITE)
    set_post_processing(cfg.model, 0., MASKS)
    cfg.model.test_cfg.fcos.nms_mode = nms_mode
    run = heads_pass(build(cfg.model, True), make_data(SIZE))
    assert len(run()[0].masks) == MASKS
    ops, per_name = count_aten_ops(run)
    assert ops <= mask_rcnn_ops, (
        f'{ops} ATen ops > Mask R-CNN {mask_rcnn_ops}; most: '
        f'{sorted(per_name.items(), key=lambda kv: -kv[1])[:8]}')


def test_count_aten_ops_counts_top_level_calls():
    x = torch.ones(3)
    total, per_name = count_aten_ops(lambda: (x + 1).sum())
    assert per_name == {'aten::add': 1, 'aten::sum': 1} and total == 2


def test_mask_rcnn_gets_the_centermask_backbone():
    cfg = Config.fromfile(LITE)
    model_cfg = mask_rcnn_model_cfg(cfg)
    assert model_cfg.backbone.type == cfg.model.backbone.type == 'VoVNet'
    assert tuple(model_cfg.backbone.out_indices) == (0, 1, 2, 3)
    assert model_cfg.roi_head.mask_head.num_classes == cfg.model.num_classes


def test_make_data_is_deterministic():
    a, b = make_data((8, 9)), make_data((8, 9))
    assert torch.equal(a['inputs'][0], b['inputs'][0])
    assert a['data_samples'][0].ori_shape == (8, 9)
