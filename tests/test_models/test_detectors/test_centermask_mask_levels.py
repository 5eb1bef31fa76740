"""The stride-4 mask level (``num_mask_only_levels=1``): the FCOS head's
outputs do not change, the mask branch reads P2, it trains, and a
mismatched config is refused naming the fix."""
import re

import pytest
import torch
from mmdet.registry import MODELS

from detector_utils import LOSSES, batch, tiny_cfg


def with_p2(cfg):
    """The tiny Lite V2-19-slim-dw config with the mask-only P2 level."""
    cfg.num_mask_only_levels = 1
    cfg.backbone.out_indices = (0, 1, 2, 3)
    cfg.neck.update(in_channels=[112, 256, 384, 512], num_outs=6)
    cfg.roi_head.mask_roi_extractor.featmap_strides = [4, 8, 16, 32]
    return cfg


def build(cfg, seed=0):
    torch.manual_seed(seed)
    detector = MODELS.build(cfg)
    detector.init_weights()
    return detector.eval()


def shifted_neck_keys(state_dict):
    """The P3-P7 model's weights under the P2-P7 model's names: the FPN's
    lateral and output convs move up one index."""
    def rename(key):
        return re.sub(r'^neck\.(lateral|fpn)_convs\.(\d+)\.',
                      lambda m: f'neck.{m[1]}_convs.{int(m[2]) + 1}.', key)

    return {rename(key): value for key, value in state_dict.items()}


def test_fcos_outputs_do_not_change():
    authors = build(tiny_cfg())
    ours = build(with_p2(tiny_cfg()), seed=1)
    missing, unexpected = ours.load_state_dict(
        shifted_neck_keys(authors.state_dict()), strict=False)
    assert unexpected == []
    assert all(k.startswith(('neck.lateral_convs.0.', 'neck.fpn_convs.0.'))
               for k in missing), missing
    data = batch(authors, [5, 6], training=False)
    with torch.no_grad():
        expected = authors._forward(data['inputs'])[:3]
        feats = ours.extract_feat(data['inputs'])
        got = ours._forward(data['inputs'])[:3]
    assert len(feats) == 6
    assert feats[0].shape[-2:] == (16, 16)  # P2 of a 64 px input
    for expected_level, got_level in zip(expected, got):
        for e, g in zip(expected_level, got_level):
            assert torch.equal(e, g)


def test_mask_branch_reads_p2_and_trains():
    model = build(with_p2(tiny_cfg())).train()
    data = batch(model, [1, 2])
    losses = model.loss(data['inputs'], data['data_samples'])
    assert set(LOSSES) <= set(losses)
    assert all(torch.isfinite(losses[name]).all() for name in LOSSES)
    sum(losses[name] for name in LOSSES).backward()
    p2_lateral = model.neck.lateral_convs[0].conv.weight.grad
    assert p2_lateral is not None and p2_lateral.abs().sum() > 0


def test_predict_with_p2():
    model = build(with_p2(tiny_cfg()))
    model.bbox_head.test_cfg['score_thr'] = 0.0
    data = batch(model, [5], training=False)
    with torch.no_grad():
        pred = model.predict(data['inputs'],
                             data['data_samples'])[0].pred_instances
    assert len(pred) > 0
    assert pred.masks.shape[1:] == (64, 64)
    assert torch.isfinite(pred.mask_scores).all()


def test_extractor_strides_must_start_at_p2():
    cfg = with_p2(tiny_cfg())
    cfg.roi_head.mask_roi_extractor.featmap_strides = [8, 16, 32]
    with pytest.raises(ValueError, match=r'featmap_strides is \[8, 16, 32\]'
                       r'.*Start featmap_strides at 4'):
        MODELS.build(cfg)


@pytest.mark.parametrize('levels', [-1, 1.5])
def test_bad_level_count_is_refused(levels):
    cfg = tiny_cfg()
    cfg.num_mask_only_levels = levels
    with pytest.raises(ValueError, match='num_mask_only_levels'):
        MODELS.build(cfg)
