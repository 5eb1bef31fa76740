"""Inference against centermask2, stage by stage, on the recorded input
tensor: weights and conversion, backbone, FPN, raw FCOS outputs, FCOS
post-processing (in isolation on the golden head outputs and end to end),
RoI levels, RoI features, mask logits, MaskIoU, final instances at the
original size. The V-39 cases (about 5 s per forward pass on 2 CPU threads)
are marked ``slow``."""
import json
from typing import Dict

import numpy as np
import torch
import pytest
from fidelity_utils import (FEATURE_RTOL, HEAD_RTOL, LEVELS,
                            PROPOSAL_BOX_ATOL, PROPOSAL_BOX_RTOL,
                            PROPOSAL_SCORE_ATOL, STRIDES, INFER_PARAMS,
                            VARIANT_PARAMS, assert_boxes_close, assert_close,
                            assert_equal, assert_same_order,
                            check_final_instances, converted_model,
                            image_meta, infer_run, match_detections, record)
from fidelity_utils import two_threads  # noqa: F401 (autouse fixture)
from golden_utils import golden_dir, load_npz


@pytest.mark.parametrize('variant', VARIANT_PARAMS)
def test_weights_convert_and_load_strictly(variant):
    model, _, conversion = converted_model(variant)
    manifest = json.loads(
        (golden_dir() / variant / 'manifest.json').read_text())
    assert conversion.num_converted == len(manifest)
    assert conversion.dropped == []
    bn_counters = [k for k, _ in conversion.added]
    assert all(k.endswith('num_batches_tracked') for k in bn_counters)
    assert set(model.state_dict()) == set(conversion.state_dict)


# --------------------------------------------------------------------------
# inference, stage by stage, on the recorded input tensor
# --------------------------------------------------------------------------


def _channel_stats(case: str, stage: str, ours: np.ndarray,
                   data: Dict[str, np.ndarray], prefix: str) -> None:
    """Compare the shape and the per-channel statistics (mean, std, min,
    max over h x w) of a (C, h, w) map with ``<prefix>__ch_*``."""
    assert tuple(data[f'{prefix}__shape'][1:]) == ours.shape, (
        f'{case} {stage}: shape {ours.shape} vs golden '
        f'{tuple(data[prefix + "__shape"][1:])}')
    flat = ours.reshape(ours.shape[0], -1).astype(np.float64)
    # statistics of the map: relative to the map's magnitude
    scale = max(
        np.abs(data[f'{prefix}__ch_min']).max(),
        np.abs(data[f'{prefix}__ch_max']).max())
    for stat, value in (('mean', flat.mean(1)), ('std', flat.std(1)),
                        ('min', flat.min(1)), ('max', flat.max(1))):
        golden = data[f'{prefix}__ch_{stat}']
        err = np.abs(value - golden)
        worst = int(err.argmax())
        record(case, f'{stage} ch_{stat} (rel)', err.max() / scale)
        assert err.max() <= FEATURE_RTOL * scale, (
            f'{case} {stage} ch_{stat}: channel {worst} ours '
            f'{value[worst]:.9g} golden {golden[worst]:.9g} (err '
            f'{err.max():.3g} > {FEATURE_RTOL} x {scale:.4g})')


def _channel_subset(case: str, stage: str, ours: np.ndarray, variant: str,
                    image: str, prefix: str) -> None:
    """Compare a (C, h, w) map with the full set's ``<prefix>__subset`` on
    ``<prefix>__channels``, or with the whole map where the full set stores
    it (Lite coffee FPN)."""
    name = f'{image}_infer'
    try:
        data = load_npz(variant, name,
                        [f'{prefix}__subset', f'{prefix}__channels'])
    except KeyError:
        assert_close(case, f'{stage} full map', ours,
                     load_npz(variant, name, [prefix])[prefix], FEATURE_RTOL)
        return
    assert_close(case, f'{stage} subset', ours[data[f'{prefix}__channels']],
                 data[f'{prefix}__subset'], FEATURE_RTOL)


MAPS = [('backbone', f'backbone {stage}', f'backbone_{stage}', index)
        for index, stage in enumerate(('stage3', 'stage4', 'stage5'))]
MAPS += [('fpn', f'FPN P{level}', f'fpn_p{level}', index)
         for index, level in enumerate(LEVELS)]


@pytest.mark.parametrize('variant,image', INFER_PARAMS)
def test_backbone_and_fpn_channel_statistics(variant, image):
    run = infer_run(variant, image)
    for output, stage, prefix, index in MAPS:
        _channel_stats(f'{variant}/{image}', stage, run[output][index],
                       run['data'], prefix)


@pytest.mark.parametrize('variant,image', INFER_PARAMS)
def test_backbone_and_fpn_maps(variant, image):
    """Full golden set: the stored channels of every map, element-wise."""
    run = infer_run(variant, image)
    for output, stage, prefix, index in MAPS:
        _channel_subset(f'{variant}/{image}', stage, run[output][index],
                        variant, image, prefix)


@pytest.mark.parametrize('variant,image', INFER_PARAMS)
def test_fcos_raw_outputs(variant, image):
    """Full golden set: the raw FCOS maps of every level."""
    run, case = infer_run(variant, image), f'{variant}/{image}'
    data = load_npz(variant, f'{image}_infer', [
        f'fcos_{name}_p{level}' for level in LEVELS
        for name in ('cls_logits', 'reg', 'ctr_logits', 'num_candidates')
    ])
    for lvl, level in enumerate(LEVELS):
        assert_close(case, f'FCOS cls logits P{level}', run['cls'][lvl],
                     data[f'fcos_cls_logits_p{level}'], FEATURE_RTOL)
        assert_close(case, f'FCOS reg (stride units) P{level}',
                     run['reg'][lvl], data[f'fcos_reg_p{level}'], FEATURE_RTOL)
        assert_close(case, f'FCOS ctr logits P{level}', run['ctr'][lvl],
                     data[f'fcos_ctr_logits_p{level}'], FEATURE_RTOL)
        candidates = int((torch.from_numpy(run['cls'][lvl]).sigmoid()
                          > 0.05).sum())
        record(case, f'FCOS #candidates P{level} (diff)',
               abs(candidates - int(data[f'fcos_num_candidates_p{level}'])))


@pytest.mark.parametrize('variant,image', INFER_PARAMS)
def test_postprocess_on_golden_head_outputs(variant, image):
    """Full golden set: FCOS post-processing alone, the golden head outputs
    through ours."""
    model, _, _ = converted_model(variant)
    case = f'{variant}/{image}'
    data = load_npz(variant, f'{image}_infer', [
        f'fcos_{name}_p{level}' for level in LEVELS
        for name in ('cls_logits', 'reg', 'ctr_logits')
    ] + [
        'input_tensor', 'resized_hw', 'orig_hw', 'scale_xy', 'proposal_boxes',
        'proposal_classes', 'proposal_scores'
    ])
    outputs = [[
        torch.from_numpy(data[f'fcos_{name}_p{level}'])[None] *
        (stride if name == 'reg' else 1)
        for level, stride in zip(LEVELS, STRIDES)
    ] for name in ('cls_logits', 'reg', 'ctr_logits')]
    meta = image_meta(data, data['input_tensor'].shape[-2:])
    dets = model.bbox_head.predict_by_feat(
        *outputs, batch_img_metas=[meta], rescale=False)[0]
    stage = 'post-processing on golden head outputs'
    index = match_detections(case, stage, dets.bboxes.numpy(),
                             dets.labels.numpy(), data['proposal_boxes'],
                             data['proposal_classes'])
    assert_same_order(case, stage, index, data['proposal_scores'])
    assert_boxes_close(case, stage + ' boxes',
                       dets.bboxes.numpy()[index], data['proposal_boxes'],
                       PROPOSAL_BOX_ATOL, 0.)
    assert_close(
        case,
        stage + ' scores',
        dets.scores.numpy()[index],
        data['proposal_scores'],
        atol=PROPOSAL_SCORE_ATOL)


@pytest.mark.parametrize('variant,image', INFER_PARAMS)
def test_proposals(variant, image):
    run, case = infer_run(variant, image), f'{variant}/{image}'
    data, dets, index = run['data'], run['dets'], run['golden_index']
    assert_same_order(case, 'proposals', index, data['proposal_scores'])
    assert_equal(case, 'proposal classes',
                 dets.labels.numpy()[index], data['proposal_classes'])
    assert_boxes_close(case, 'proposal boxes',
                       dets.bboxes.numpy()[index], data['proposal_boxes'],
                       PROPOSAL_BOX_ATOL, PROPOSAL_BOX_RTOL)
    assert_close(
        case,
        'proposal scores',
        dets.scores.numpy()[index],
        data['proposal_scores'],
        atol=PROPOSAL_SCORE_ATOL)
    assert_equal(case, 'RoI pooling levels', run['levels'], data['roi_levels'])


@pytest.mark.parametrize('variant,image', INFER_PARAMS)
def test_mask_branch(variant, image):
    run, case = infer_run(variant, image), f'{variant}/{image}'
    data = run['data']
    classes = data['proposal_classes']
    feats, logits = run['roi_feats'], run['mask_logits']
    assert_close(case, 'RoI features channel means', feats.mean((2, 3)),
                 data['roi_feats__ch_mean'], HEAD_RTOL)
    assert_close(case, 'mask logits (predicted class)',
                 logits[np.arange(len(logits)),
                        classes], data['mask_logits_pred_class'], HEAD_RTOL)
    assert_close(case, 'MaskIoU', run['mask_iou'], data['maskiou_pred'],
                 HEAD_RTOL)


@pytest.mark.parametrize('variant,image', INFER_PARAMS)
def test_mask_branch_maps(variant, image):
    """Full golden set: RoI features and mask logits of every class."""
    run, case = infer_run(variant, image), f'{variant}/{image}'
    data = load_npz(variant, f'{image}_infer',
                    ['roi_feats_first16ch', 'mask_logits_all_first4'])
    assert_close(case, 'RoI features (ch 0-15)', run['roi_feats'][:, :16],
                 data['roi_feats_first16ch'], HEAD_RTOL)
    assert_close(case, 'mask logits (all classes, first 4 RoIs)',
                 run['mask_logits'][:4], data['mask_logits_all_first4'],
                 HEAD_RTOL)


@pytest.mark.parametrize('variant,image', INFER_PARAMS)
def test_final_instances(variant, image):
    run = infer_run(variant, image)
    check_final_instances(f'{variant}/{image}', run['final'], run['data'])
