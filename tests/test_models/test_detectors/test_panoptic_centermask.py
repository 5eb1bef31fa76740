"""The Panoptic-CenterMask detector: the six losses fall on a tiny batch,
P2 reaches the semantic head only, predictions in both frames, tensor mode,
class counts given once."""
from unittest import mock

import numpy as np
import pytest
import torch
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.registry import MODELS

from detector_utils import LOSSES
from panoptic_utils import NUM_STUFF, panoptic_batch, tiny_panoptic_cfg

NUM_THINGS = 3
PANOPTIC_LOSSES = LOSSES + ('loss_seg', )


@pytest.fixture
def model():
    torch.manual_seed(0)
    detector = MODELS.build(tiny_panoptic_cfg(NUM_THINGS))
    detector.init_weights()
    return detector


def test_losses_fall(model):
    """The CenterMask losses (tested at length in test_centermask.py) and
    the semantic loss, trained together."""
    torch.manual_seed(0)
    data = panoptic_batch(model, [1, 2])
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    history = {name: [] for name in PANOPTIC_LOSSES + ('total', )}
    for _ in range(6):
        losses = model.loss(data['inputs'], data['data_samples'])
        assert set(losses) == set(PANOPTIC_LOSSES)
        total = sum(losses.values())
        for name, value in dict(losses, total=total).items():
            history[name].append(value.item())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    for name, values in history.items():
        assert np.isfinite(values).all(), name
    for name in ('loss_seg', 'total'):
        values = history[name]
        assert np.mean(values[-2:]) < np.mean(values[:2]), (name, values)


def test_levels_reach_their_heads(model):
    """P2 (stride 4) feeds the semantic head only; FCOS and the mask branch
    get P3-P7 as in CenterMask."""
    model.eval()
    data = panoptic_batch(model, [3], training=False)
    seen = {}
    fcos_forward = model.bbox_head.forward

    def record_levels(feats):
        seen['fcos'] = feats
        return fcos_forward(feats)

    model.bbox_head.test_cfg['score_thr'] = 0.0
    with torch.no_grad(), mock.patch.object(model.bbox_head, 'forward',
                                            record_levels):
        outs = model._forward(data['inputs'], data['data_samples'])
    # 64 px input: P3-P7 are 8, 4, 2, 1, 1 px wide (P2 would be 16)
    assert [f.shape[-1] for f in seen['fcos']] == [8, 4, 2, 1, 1]
    assert outs[-1].shape == (1, NUM_STUFF + 1, 16, 16)  # stride 4


@pytest.mark.parametrize('rescale', [True, False])
def test_predict_instances_and_panoptic_map(model, rescale):
    model.eval()
    model.bbox_head.test_cfg['score_thr'] = 0.0
    model.panoptic_fusion_head.test_cfg['score_thr'] = 0.0
    data = panoptic_batch(model, [4, 5], training=False)
    for sample in data['data_samples']:  # original images of 80 px
        sample.set_metainfo(dict(ori_shape=(80, 80), scale_factor=(0.8, 0.8)))
    with torch.no_grad():
        results = model.predict(
            data['inputs'], data['data_samples'], rescale=rescale)
    size = (80, 80) if rescale else (64, 64)
    for result in results:
        instances = result.pred_instances
        assert 0 < len(instances) <= 50
        assert instances.masks.shape[-2:] == size
        panoptic = result.pred_panoptic_seg.sem_seg
        assert panoptic.shape == (1, ) + size
        values = panoptic.unique()
        things = values[values >= INSTANCE_OFFSET]
        stuff = values[values < INSTANCE_OFFSET]
        assert len(things) > 0  # every instance passes score_thr 0
        assert ((things % INSTANCE_OFFSET) < NUM_THINGS).all()
        assert ((stuff >= NUM_THINGS) &
                (stuff <= NUM_THINGS + NUM_STUFF)).all()


def test_class_counts_given_once():
    cfg = tiny_panoptic_cfg(NUM_THINGS)
    model = MODELS.build(cfg)
    for head in (model.semantic_head, model.panoptic_fusion_head):
        assert head.num_things_classes == NUM_THINGS
        assert head.num_stuff_classes == NUM_STUFF
    assert model.semantic_head.conv_logits.out_channels == NUM_STUFF + 1
    cfg.semantic_head.num_stuff_classes = 53
    with pytest.raises(ValueError, match='num_stuff_classes=53'):
        MODELS.build(cfg)


@pytest.mark.parametrize('value', [-1, 2.5, None])
def test_bad_stuff_count_is_named(value):
    cfg = tiny_panoptic_cfg(NUM_THINGS)
    cfg.num_stuff_classes = value
    with pytest.raises(ValueError, match='num_stuff_classes'):
        MODELS.build(cfg)


def test_missing_fusion_setting_is_named():
    cfg = tiny_panoptic_cfg(NUM_THINGS)
    del cfg.test_cfg.panoptic['score_thr']
    with pytest.raises(ValueError, match='test_cfg.panoptic.score_thr'):
        MODELS.build(cfg)


def test_mask_branch_can_read_p2():
    """``num_mask_only_levels=1``: the mask branch pools from P2-P5 (the
    level the semantic head reads too); FCOS keeps P3-P7."""
    cfg = tiny_panoptic_cfg(NUM_THINGS)
    cfg.num_mask_only_levels = 1
    cfg.roi_head.mask_roi_extractor.featmap_strides = [4, 8, 16, 32]
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    model.eval()
    data = panoptic_batch(model, [3], training=False)
    x = model.extract_feat(data['inputs'])
    assert [f.shape[-1] for f in model.fcos_feats(x)] == [8, 4, 2, 1, 1]
    assert [f.shape[-1] for f in model.mask_feats(x)][:4] == [16, 8, 4, 2]
    model.bbox_head.test_cfg['score_thr'] = 0.0
    with torch.no_grad():
        result = model.predict(data['inputs'], data['data_samples'])[0]
    assert len(result.pred_instances) > 0


def test_mask_levels_beyond_the_neck_are_refused():
    cfg = tiny_panoptic_cfg(NUM_THINGS)
    cfg.num_mask_only_levels = 2
    cfg.roi_head.mask_roi_extractor.featmap_strides = [2, 4, 8, 16, 32]
    with pytest.raises(ValueError, match='num_mask_only_levels=2 > '
                       'num_semantic_only_levels=1'):
        MODELS.build(cfg)
