"""Tiny CenterMask models and shapes batches shared by the model tests."""
import os.path as osp

import numpy as np
import torch
from mmdet.models.task_modules.assigners import AssignResult
from mmdet.models.task_modules.samplers import SamplingResult
from mmdet.structures import DetDataSample
from mmdet.structures.mask import PolygonMasks
from mmdet.utils import register_all_modules
from mmengine.config import Config
from mmengine.structures import InstanceData

from repo_paths import REPO_ROOT
from mmcentermask.datasets import make_image

CONFIG = osp.join(
    REPO_ROOT, 'configs/centermask/'
    'centermask-lite_vovnet-v2-19-slim-dw_fpn_ms-4x_coco.py')
#: Lines of a config file that shrink a CenterMask-Lite config to 32
#: channels (GN 8 groups) and keep every FCOS candidate: the tiny model of
#: the end-to-end tool tests.
TINY_MODEL_LINES = """model = dict(
    neck=dict(out_channels=32),
    bbox_head=dict(in_channels=32, feat_channels=32,
                   norm_cfg=dict(type='GN', num_groups=8)),
    roi_head=dict(
        mask_roi_extractor=dict(out_channels=32),
        mask_head=dict(in_channels=32, conv_out_channels=32),
        mask_iou_head=dict(in_channels=32, conv_out_channels=32,
                           fc_out_channels=64)),
    test_cfg=dict(fcos=dict(score_thr=0.0)))
"""
LOSSES = ('loss_cls', 'loss_bbox', 'loss_centerness', 'loss_mask',
          'loss_mask_iou')


def tiny_cfg(num_classes=3):
    """The Lite config with 32-channel FPN and heads, trainable BN, NCHW
    tensors (the reference layout of the channels-last tests)."""
    register_all_modules()
    cfg = Config.fromfile(CONFIG).model
    cfg.num_classes = num_classes
    cfg.channels_last = False
    cfg.backbone.norm_cfg = dict(type='BN', requires_grad=True)
    cfg.backbone.norm_eval = False
    cfg.neck.out_channels = 32
    cfg.bbox_head.update(
        in_channels=32,
        feat_channels=32,
        norm_cfg=dict(type='GN', num_groups=8))
    cfg.roi_head.mask_roi_extractor.out_channels = 32
    cfg.roi_head.mask_head.update(in_channels=32, conv_out_channels=32)
    cfg.roi_head.mask_iou_head.update(
        in_channels=32, conv_out_channels=32, fc_out_channels=64)
    return cfg


def sample(seed, size=64, num_shapes=3):
    """One shapes image (3, H, W) uint8 and its data sample (polygons)."""
    img, instances = make_image(
        np.random.default_rng(seed), size, size, num_shapes)
    data_sample = DetDataSample(
        metainfo=dict(
            img_shape=(size, size),
            ori_shape=(size, size),
            scale_factor=(1., 1.)))
    gt = InstanceData()
    gt.bboxes = torch.tensor([[x, y, x + w, y + h]
                              for x, y, w, h in (i['bbox']
                                                 for i in instances)],
                             dtype=torch.float32).reshape(-1, 4)
    gt.labels = torch.tensor([i['category_id'] - 1 for i in instances],
                             dtype=torch.long)
    gt.masks = PolygonMasks([[np.array(p) for p in i['segmentation']]
                             for i in instances], size, size)
    data_sample.gt_instances = gt
    return torch.from_numpy(img).permute(2, 0, 1).contiguous(), data_sample


def batch(model, seeds, training=True, **kwargs):
    """Shapes images of ``seeds`` through the model's data preprocessor."""
    imgs, samples = zip(*(sample(s, **kwargs) for s in seeds))
    return model.data_preprocessor(
        dict(inputs=list(imgs), data_samples=list(samples)), training)


def make_sampling_result(boxes, gt_boxes, gt_inds, gt_labels):
    """All ``boxes`` positive, matched to ``gt_inds``."""
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    gt_boxes = torch.as_tensor(gt_boxes, dtype=torch.float32).reshape(-1, 4)
    gt_inds = torch.as_tensor(gt_inds, dtype=torch.long)
    num = len(boxes)
    assign = AssignResult(
        len(gt_boxes),
        gt_inds + 1,
        torch.ones(num),
        labels=torch.as_tensor(gt_labels)[gt_inds])
    return SamplingResult(
        torch.arange(num),
        torch.zeros(0).long(), boxes, gt_boxes, assign,
        torch.zeros(num).byte())
