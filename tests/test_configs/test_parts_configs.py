"""``configs/centermask_parts``: CenterMask's parts inside MMDetection's own
two-stage models build, train one step and predict; the metafile and README
list every config."""
import glob
import os.path as osp
import re
from unittest import mock

import pytest
import torch
import yaml

from config_test_utils import (CONFIG_ROOT, REPO_ROOT,
                               assert_instance_predictions, build_model,
                               load_config, make_batch, non_finite_grads,
                               params_without_grad, predict, train_step)
from mmcentermask.models.roi_heads.roi_extractors import \
    AdaptiveLevelRoIExtractor

PARTS_DIR = osp.join(CONFIG_ROOT, 'centermask_parts')
CONFIGS = sorted(glob.glob(osp.join(PARTS_DIR, '*.py')))
ADAPTIVE = osp.join(PARTS_DIR,
                    'mask-rcnn_r50_fpn_adaptive-level-roi_1x_coco.py')
MASK_RCNN_LOSSES = {
    'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox', 'loss_mask'
}
# What each config mixes in: (RoI head, mask head, box / mask extractors).
EXPECTED = {
    'mask-rcnn_r50_fpn_sag-mask_1x_coco':
    ('StandardRoIHead', 'SAGMaskHead', 'SingleRoIExtractor'),
    'mask-rcnn_r50_fpn_adaptive-level-roi_1x_coco':
    ('StandardRoIHead', 'FCNMaskHead', 'AdaptiveLevelRoIExtractor'),
    'mask-scoring-rcnn_r50_fpn_sag-mask_1x_coco':
    ('MaskScoringRoIHead', 'SAGMaskHead', 'SingleRoIExtractor'),
}


def stem(path: str) -> str:
    """Config name without directory and extension."""
    return osp.splitext(osp.basename(path))[0]


def pretrained_checkpoints(cfg) -> list:
    """Every ``init_cfg`` of the model config that loads a checkpoint."""
    found = []

    def visit(node):
        if isinstance(node, dict):
            init_cfg = node.get('init_cfg')
            for item in init_cfg if isinstance(init_cfg, list) else [init_cfg]:
                if isinstance(item, dict) and 'checkpoint' in item:
                    found.append(item['checkpoint'])
            for value in node.values():
                visit(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                visit(value)

    visit(cfg.model.to_dict())
    return found


def shrink(cfg) -> None:
    """Fewer proposals and sampled RoIs (CPU time); random weights: keep
    every detection so that max_per_img masks are pasted."""
    cfg.model.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=100)
    cfg.model.train_cfg.rcnn.sampler.num = 64
    cfg.model.test_cfg.rpn.update(nms_pre=200, max_per_img=100)
    cfg.model.test_cfg.rcnn.update(score_thr=0., max_per_img=20)


@pytest.mark.parametrize('path', CONFIGS, ids=stem)
def test_build_train_step_and_predict(path):
    cfg = load_config(path)
    assert cfg.custom_imports == dict(
        imports=['mmcentermask'], allow_failed_imports=False)
    assert pretrained_checkpoints(cfg) == [], 'would download weights'
    shrink(cfg)
    model = build_model(cfg.model)

    roi_head, mask_head, extractor = EXPECTED[stem(path)]
    assert type(model.roi_head).__name__ == roi_head
    assert type(model.roi_head.mask_head).__name__ == mask_head
    assert type(model.roi_head.bbox_roi_extractor).__name__ == extractor
    assert type(model.roi_head.mask_roi_extractor).__name__ == extractor

    batch = make_batch(80, sizes=[(64, 64), (64, 64)], mask_type='bitmap')
    losses = train_step(model, batch)
    expected = set(MASK_RCNN_LOSSES)
    if roi_head == 'MaskScoringRoIHead':
        expected.add('loss_mask_iou')
    assert set(losses) == expected | {'loss'}
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values()), \
        losses
    assert losses['loss_mask'] > 0
    assert non_finite_grads(model) == []
    assert params_without_grad(model) == []

    results = predict(model, make_batch(80))
    assert_instance_predictions(
        results,
        80,
        cfg.model.test_cfg.rcnn.max_per_img,
        with_mask_scores=False)


def test_adaptive_extractor_without_metas_uses_the_padded_batch_size():
    """StandardRoIHead gives the extractors no image metas: every RoI is
    assigned as if its image filled the padded batch (documented in
    README.md)."""
    cfg = load_config(ADAPTIVE)
    shrink(cfg)
    model = build_model(cfg.model)
    calls = []
    original = AdaptiveLevelRoIExtractor.roi_image_areas

    def record(self, feats, rois, batch_img_metas=None):
        areas = original(self, feats, rois, batch_img_metas)
        calls.append((batch_img_metas, areas))
        return areas

    # two images padded to one 64 x 96 batch
    batch = make_batch(80, sizes=[(64, 64), (40, 96)], mask_type='bitmap')
    with mock.patch.object(AdaptiveLevelRoIExtractor, 'roi_image_areas',
                           record):
        predict(model, batch)
    assert len(calls) == 2, 'one box and one mask RoI extraction'
    for batch_img_metas, areas in calls:
        assert batch_img_metas is None
        assert areas.numel() > 0
        assert (areas == 64 * 96).all()


def test_metafile_and_readme_list_every_config():
    with open(osp.join(PARTS_DIR, 'metafile.yml')) as f:
        metafile = yaml.safe_load(f)
    models = metafile['Models']
    in_metafile = [m['Config'] for m in models]
    on_disk = {osp.relpath(p, REPO_ROOT) for p in CONFIGS}
    assert set(in_metafile) == on_disk
    assert len(in_metafile) == len(on_disk)
    for model in models:
        assert model['Name'] == stem(model['Config'])
        assert 'Results' not in model, 'none of these models was trained'
    with open(osp.join(PARTS_DIR, 'README.md')) as f:
        linked = set(re.findall(r'\]\(([^)\s]+\.py)\)', f.read()))
    assert linked == {osp.basename(p) for p in CONFIGS}
