"""The configs of ``configs/centermask-panoptic``: the model is the instance
config's CenterMask plus exactly the Panoptic FPN parts of centermask2's
panoptic config (checked against the golden manifest's size), the COCO
panoptic data of MMDetection, one training step and a prediction."""
import glob
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet.evaluation.functional import INSTANCE_OFFSET

from config_test_utils import CONFIG_ROOT, build_model, load_config
from panoptic_utils import panoptic_batch

PANOPTIC_DIR = osp.join(CONFIG_ROOT, 'centermask-panoptic')
CONFIGS = sorted(glob.glob(osp.join(PANOPTIC_DIR, '*.py')))
V39 = osp.join(PANOPTIC_DIR,
               'panoptic-centermask_vovnet-v2-39_fpn_ms-3x_coco.py')
V39_INSTANCE = osp.join(CONFIG_ROOT, 'centermask',
                        'centermask_vovnet-v2-39_fpn_ms-3x_coco.py')
#: values of centermask2's panoptic V-39 state dict (golden README)
V39_VALUES = 54_936_450


def test_instance_part_is_the_centermask_config():
    panoptic, instance = load_config(V39).model, load_config(
        V39_INSTANCE).model
    for part in ('bbox_head', 'roi_head', 'train_cfg', 'num_classes'):
        assert panoptic[part] == instance[part], part
    assert panoptic.test_cfg.fcos == instance.test_cfg.fcos
    assert panoptic.test_cfg.rcnn == instance.test_cfg.rcnn
    assert panoptic.backbone.out_indices == (0, 1, 2, 3)
    assert panoptic.neck.in_channels == [256, 512, 768, 1024]
    assert panoptic.neck.num_outs == 6


def test_detectron2_panoptic_settings():
    cfg = load_config(V39)
    model = cfg.model
    assert model.num_stuff_classes == 53
    assert model.test_cfg.panoptic == dict(
        score_thr=0.5, mask_overlap=0.5, stuff_area_limit=4096)
    loss = model.semantic_head.loss_seg
    assert (loss.ignore_index, loss.avg_non_ignore,
            loss.loss_weight) == (255, True, 0.5)
    assert model.data_preprocessor.seg_pad_value == 255
    for loader in (cfg.train_dataloader, cfg.test_dataloader):
        assert loader.dataset.type == 'CheckedCocoPanopticDataset'
    assert cfg.custom_hooks[0].type == 'PanopticNumClassCheckHook'
    assert 'NumClassCheckHook' not in [h.type for h in cfg.custom_hooks]
    assert cfg.test_evaluator.type == 'CocoPanopticQualityMetric'
    steps = [t['type'] for t in cfg.train_dataloader.dataset.pipeline]
    assert steps == [
        'LoadImageFromFile', 'LoadCocoPanopticAnnotations',
        'RandomChoiceResize',
        'RandomFlip', 'PackDetInputs'
    ]


def test_v39_has_centermask2s_parameter_count():
    model = build_model(load_config(V39).model)
    values = sum(v.numel() for k, v in model.state_dict().items()
                 if not k.endswith('num_batches_tracked'))
    assert values == V39_VALUES


@pytest.mark.slow
@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_config_trains_and_predicts(path):
    cfg = load_config(path)
    model = build_model(cfg.model)
    data = panoptic_batch(
        model, [1, 2],
        num_things=cfg.model.num_classes,
        num_stuff=cfg.model.num_stuff_classes)
    model.train()
    losses = model.loss(data['inputs'], data['data_samples'])
    assert 'loss_seg' in losses
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    model.eval()
    model.bbox_head.test_cfg['score_thr'] = 0.0
    model.panoptic_fusion_head.test_cfg['score_thr'] = 0.0
    data = panoptic_batch(model, [3], training=False)
    with torch.no_grad():
        result = model.predict(data['inputs'], data['data_samples'])[0]
    panoptic = result.pred_panoptic_seg.sem_seg
    assert panoptic.shape == (1, 64, 64)
    assert (panoptic >= INSTANCE_OFFSET).any()  # instances reach the map
    assert np.isfinite(result.pred_instances.scores.numpy()).all()
