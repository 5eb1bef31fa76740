"""The configs of ``configs/centermask-point``: every config builds, runs a
training step and a prediction on a tiny input; the COCO pipelines (mask-
aware CenterNet crop, test padding) run on real annotations; the README and
metafile list exactly the configs."""
import glob
import os.path as osp

import numpy as np
import pytest
import yaml
from mmdet.registry import DATASETS

from config_test_utils import (CONFIG_ROOT, assert_instance_predictions,
                               build_model, load_config, make_batch,
                               non_finite_grads, params_without_grad, predict,
                               train_step)

POINT_DIR = osp.join(CONFIG_ROOT, 'centermask-point')
CONFIGS = sorted(glob.glob(osp.join(POINT_DIR, '*.py')))
R18 = osp.join(POINT_DIR, 'centermask-point_r18_8xb16-crop512-130e_coco.py')
# Hourglass-104 (~190M parameters) and DLA-34 with DCN take tens of seconds
# for one step on 2 CPU cores.
HEAVY = ('hourglass104', 'dla34')
LOSSES = {
    'loss_center_heatmap', 'loss_wh', 'loss_offset', 'loss_mask',
    'loss_saliency'
}
FCOS_LOSSES = {
    'loss_cls', 'loss_bbox', 'loss_centerness', 'loss_mask', 'loss_saliency'
}


def config_id(path):
    return osp.basename(path)[:-3]


def tiny_model_cfg(cfg):
    """The config's model, without downloads; the shapes input size."""
    model = cfg.model
    if model.backbone.get('init_cfg'):
        model.backbone.init_cfg = None
    return model


@pytest.mark.parametrize('path', [
    pytest.param(p, marks=pytest.mark.slow)
    if any(h in p for h in HEAVY) else p for p in CONFIGS
], ids=config_id)
def test_config_trains_and_predicts(path):
    cfg = load_config(path)
    model_cfg = tiny_model_cfg(cfg)
    is_fcos = 'fcos' in osp.basename(path)
    if is_fcos:  # a fresh FCOS head scores below its 0.05 threshold
        model_cfg.test_cfg.score_thr = 0.0
    model = build_model(model_cfg)
    num_classes = model.bbox_head.num_classes
    size = 128 if 'hourglass' in path else 64
    losses = train_step(model,
                        make_batch(num_classes, sizes=((size, size), ) * 2,
                                   mask_type='bitmap'))
    assert (FCOS_LOSSES if is_fcos else LOSSES) == set(losses) - {'loss'}, (
        losses)
    assert all(np.isfinite(v) for v in losses.values()), losses
    assert not non_finite_grads(model)
    assert not params_without_grad(model)
    results = predict(model, make_batch(num_classes, sizes=((size, size), )))
    assert_instance_predictions(
        results, num_classes, max_per_img=100, with_mask_scores=False)


def test_hourglass_config_has_a_head_set_per_stack():
    cfg = load_config(
        osp.join(POINT_DIR,
                 'centermask-point_hourglass104_8xb16-crop512-130e_coco.py'))
    assert cfg.model.backbone.num_stacks == 2
    assert cfg.model.bbox_head.num_feat_levels == 2
    assert cfg.model.neck is None


def coco_dataset(cfg, tiny_coco, split):
    loader = cfg[f'{split}_dataloader']
    dataset = loader.dataset
    dataset.update(
        data_root=str(tiny_coco) + '/',
        ann_file=f'annotations/{"train" if split == "train" else "val"}.json',
        data_prefix=dict(img=f'{"train" if split == "train" else "val"}/'),
        metainfo=dict(classes=('circle', 'rectangle', 'triangle')))
    return DATASETS.build(dataset)


def test_coco_train_pipeline_crops_masks_with_the_image(tiny_coco):
    """The CenterNet recipe (photometric distortion, mask-aware random
    centre crop, resize to 512, flip) keeps one mask per box at the image
    size."""
    cfg = load_config(R18)
    dataset = coco_dataset(cfg, tiny_coco, 'train')
    np.random.seed(0)
    for index in range(len(dataset)):
        sample = dataset[index]['data_samples']
        gt = sample.gt_instances
        assert max(sample.img_shape) == 512
        assert len(gt.masks) == len(gt.bboxes) == len(gt.labels)
        assert (gt.masks.height, gt.masks.width) == sample.img_shape


def test_coco_test_pipeline_pads_and_records_the_border(tiny_coco):
    cfg = load_config(R18)
    dataset = coco_dataset(cfg, tiny_coco, 'val')
    sample = dataset[0]['data_samples']
    height, width = sample.ori_shape
    top, bottom, left, right = sample.border
    assert (bottom - top, right - left) == (height, width)
    assert all(s % 32 == 0 for s in sample.img_shape)
    assert 'scale_factor' not in sample


def test_readme_and_metafile_list_every_config():
    with open(osp.join(POINT_DIR, 'metafile.yml')) as f:
        metafile = yaml.safe_load(f)
    listed = sorted(
        osp.basename(model['Config']) for model in metafile['Models'])
    assert listed == sorted(osp.basename(p) for p in CONFIGS)
    with open(osp.join(POINT_DIR, 'README.md')) as f:
        readme = f.read()
    for path in CONFIGS:
        assert osp.basename(path) in readme, osp.basename(path)
