"""The heads against centermask2 in isolation, each fed the golden inputs
of its stage: FCOS post-processing on the golden head outputs, the FCOS head
on the golden FPN maps, the RoI level rule on the golden detections, the
whole mask branch on the golden FPN maps (full golden set: only the Lite
coffee file stores the full FPN maps)."""
from typing import Dict, List, Tuple

import numpy as np
import pytest
import torch
from fidelity_utils import (FEATURE_RTOL, HEAD_RTOL, LEVELS, MASK_IOU_MIN,
                            PROPOSAL_BOX_ATOL, PROPOSAL_SCORE_ATOL, STRIDES,
                            assert_boxes_close, assert_close, golden_masks,
                            mask_ious, match_detections)
from fidelity_utils import two_threads  # noqa: F401 (autouse fixture)
from golden_utils import (INFER_IMAGES, VARIANTS, convert_part,
                          golden_state_dict, load_npz)
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import bbox2roi
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from roi_head_cfg import centermask_roi_head_cfg

from mmcentermask.converters.centermask2 import reshape_to_target
from mmcentermask.converters.engine import Part
from mmcentermask.converters.key_tables.fcos_head import \
    fcos_head_key_to_mmdet
from mmcentermask.converters.key_tables.mask_branch import \
    centermask2_mask_branch_key_to_mmdet
from mmcentermask.models import AdaptiveLevelRoIExtractor

HeadOutputs = Tuple[List[torch.Tensor], List[torch.Tensor],
                    List[torch.Tensor]]  # cls logits, distances, ctr logits
TEST_CFG = dict(
    nms_pre=1000,
    score_thr=0.05,
    nms=dict(type='nms', iou_threshold=0.6),
    max_per_img=50)
LITE = 'lite_v19_slim_dw'  # the only variant with full FPN maps
FCOS_KEYS = [
    f'fcos_{name}_p{level}' for level in LEVELS
    for name in ('cls_logits', 'reg', 'ctr_logits', 'num_candidates')
]
DETECTION_KEYS = [
    'resized_hw', 'post_nms_num', 'post_nms_sorted_scores_top60',
    'proposal_boxes', 'proposal_classes', 'proposal_scores'
]
FPN_KEYS = [f'fpn_p{level}' for level in LEVELS]
MASK_KEYS = [
    'resized_hw', 'orig_hw', 'scale_xy', 'proposal_boxes', 'proposal_scores',
    'proposal_classes', 'roi_feats_first16ch', 'roi_feats__ch_mean',
    'mask_logits_pred_class', 'mask_logits_all_first4', 'maskiou_pred',
    'final_boxes', 'final_scores', 'final_classes', 'final_mask_scores',
    'final_masks_packed'
]


def build_fcos_head(**kwargs):
    """An FCOS head through the registry (80 classes)."""
    cfg = dict(
        type='CenterMaskFCOSHead',
        num_classes=80,
        in_channels=32,
        feat_channels=32,
        stacked_convs=1,
        test_cfg=TEST_CFG)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def predict(head, outputs: HeadOutputs, img_shape: Tuple[int, int],
            **cfg) -> InstanceData:
    meta = dict(img_shape=img_shape, scale_factor=(1., 1.))
    return head.predict_by_feat(
        *outputs, batch_img_metas=[meta], cfg=dict(TEST_CFG, **cfg))[0]


def assert_proposals_match(case: str, result: InstanceData,
                           data: Dict[str, np.ndarray], box_atol: float,
                           score_atol: float) -> None:
    """Same detections as centermask2 (one to one, same classes), boxes
    and scores within the tolerances."""
    index = match_detections(case, 'proposals', result.bboxes.numpy(),
                             result.labels.numpy(), data['proposal_boxes'],
                             data['proposal_classes'])
    assert_boxes_close(case, 'proposal boxes',
                       result.bboxes.numpy()[index], data['proposal_boxes'],
                       box_atol, 0.)
    assert_close(
        case,
        'proposal scores',
        result.scores.numpy()[index],
        data['proposal_scores'],
        atol=score_atol)
    assert result.labels.dtype == torch.int64


def golden_head_outputs(data: Dict[str, np.ndarray]) -> HeadOutputs:
    """Golden cls / ctr logits and distances (stride units -> pixels)."""
    cls = [
        torch.from_numpy(data[f'fcos_cls_logits_p{l}'])[None] for l in LEVELS
    ]
    reg = [
        torch.from_numpy(data[f'fcos_reg_p{l}'])[None] * s
        for l, s in zip(LEVELS, STRIDES)
    ]
    ctr = [
        torch.from_numpy(data[f'fcos_ctr_logits_p{l}'])[None] for l in LEVELS
    ]
    return cls, reg, ctr


@pytest.mark.parametrize('variant', VARIANTS)
@pytest.mark.parametrize('image', INFER_IMAGES)
def test_fcos_postprocess_candidates_and_cut(variant, image):
    """Full golden set: candidate counts per level, the per-level top-1000,
    the post-NMS count and scores, then the detections."""
    data = load_npz(variant, f'{image}_infer', FCOS_KEYS + DETECTION_KEYS)
    head = build_fcos_head()
    outputs = golden_head_outputs(data)
    priors = head.prior_generator.grid_priors(
        [c.shape[-2:] for c in outputs[0]], device='cpu')
    for lvl, level in enumerate(LEVELS):
        level_outputs = [o[lvl][0] for o in outputs]
        # scores of -1 mark the non-candidates among the top k
        all_candidates = head._select_level_candidates(
            *level_outputs, priors[lvl], score_thr=0.05, nms_pre=-1)[0]
        all_candidates = all_candidates[all_candidates >= 0]
        top = head._select_level_candidates(
            *level_outputs, priors[lvl], score_thr=0.05, nms_pre=1000)[0]
        top = top[top >= 0]
        expected = int(data[f'fcos_num_candidates_p{level}'])
        assert len(all_candidates) == expected, (level, len(all_candidates))
        assert len(top) == min(expected, 1000)
        assert torch.equal(top, all_candidates[:len(top)])

    img_shape = tuple(int(v) for v in data['resized_hw'])
    uncut = predict(head, outputs, img_shape, max_per_img=-1)
    assert len(uncut) == int(data['post_nms_num'])
    np.testing.assert_allclose(
        uncut.scores[:60].numpy(),
        data['post_nms_sorted_scores_top60'],
        rtol=0,
        atol=1e-5)

    result = predict(head, outputs, img_shape)
    assert_proposals_match(f'{variant}/{image}', result, data,
                           PROPOSAL_BOX_ATOL, PROPOSAL_SCORE_ATOL)


@pytest.fixture(scope='module')
def lite_coffee():
    """Golden data, the Lite head with converted weights (eval) and its
    outputs on the stored P3-P7."""
    data = load_npz(LITE, 'coffee_infer', FCOS_KEYS + DETECTION_KEYS + FPN_KEYS)
    head = build_fcos_head(in_channels=128, feat_channels=128,
                           stacked_convs=2)
    fcos_part = Part('fcos', 'proposal_generator.fcos_head.', '',
                     fcos_head_key_to_mmdet, reshape_to_target)
    state_dict = convert_part(
        golden_state_dict(LITE, prefix='proposal_generator.fcos_head.'),
        fcos_part, head.state_dict())
    head.load_state_dict(state_dict, strict=True)
    head.eval()
    feats = tuple(torch.from_numpy(data[f'fpn_p{l}'])[None] for l in LEVELS)
    with torch.no_grad():
        outputs = head(feats)
    return data, head, outputs


def test_fcos_head_forward_on_golden_fpn(lite_coffee):
    data, _, (cls_scores, bbox_preds, centernesses) = lite_coffee
    for lvl, (level, stride) in enumerate(zip(LEVELS, STRIDES)):
        ours = dict(
            cls_logits=cls_scores[lvl],
            reg=bbox_preds[lvl] / stride,  # eval output is in pixels
            ctr_logits=centernesses[lvl])
        for name, out in ours.items():
            assert_close(f'{LITE}/coffee', f'FCOS {name} P{level}',
                         out[0].numpy(), data[f'fcos_{name}_p{level}'],
                         FEATURE_RTOL)


def test_fcos_head_forward_then_postprocess(lite_coffee):
    data, head, outputs = lite_coffee
    img_shape = tuple(int(v) for v in data['resized_hw'])
    result = predict(head, outputs, img_shape)
    # the golden README's tolerances for a full re-implementation of the head
    assert_proposals_match(f'{LITE}/coffee', result, data, 2e-2, 1e-4)


def make_extractor() -> AdaptiveLevelRoIExtractor:
    return AdaptiveLevelRoIExtractor(
        roi_layer=dict(
            type='RoIAlign', output_size=14, sampling_ratio=0, aligned=True),
        out_channels=4,
        featmap_strides=[8, 16, 32])


@pytest.mark.parametrize('variant', VARIANTS)
@pytest.mark.parametrize('image', INFER_IMAGES)
def test_roi_levels_of_golden_detections(variant, image):
    """centermask2 levels of the test RoIs (ratio rule, resized image)."""
    data = load_npz(
        variant,
        f'{image}_infer',
        keys=['proposal_boxes', 'resized_hw', 'roi_levels'])
    extractor = make_extractor()
    height, width = data['resized_hw'].tolist()
    rois = bbox2roi([torch.from_numpy(data['proposal_boxes'])])
    feats = [torch.zeros(1, 4, 1, 1)] * 3
    areas = extractor.roi_image_areas(feats, rois,
                                      [dict(img_shape=(height, width))])
    levels = extractor.map_roi_levels(rois, areas) + 3
    np.testing.assert_array_equal(levels.numpy(), data['roi_levels'])


def lite_roi_head(clip_boxes=True):
    """CenterMask-Lite mask branch (128 channels, 2 + 2 convs)."""
    return MODELS.build(
        centermask_roi_head_cfg(
            128, 80, fc_out_channels=1024,
            test_cfg=ConfigDict(mask_thr_binary=0.5), clip_boxes=clip_boxes))


@pytest.fixture(scope='module')
def golden_run():
    """Lite mask branch with the golden weights on golden coffee P3-P7."""
    data = load_npz(LITE, 'coffee_infer', FPN_KEYS + MASK_KEYS)
    head = lite_roi_head()
    head.load_state_dict(
        convert_part(
            golden_state_dict(LITE, prefix='roi_heads.'),
            Part('mask_branch', 'roi_heads.', '',
                 centermask2_mask_branch_key_to_mmdet)),
        strict=True)
    head.eval()
    x = tuple(
        torch.from_numpy(data[f'fpn_p{level}'])[None] for level in range(3, 8))
    (height, width), (ori_h, ori_w) = data['resized_hw'], data['orig_hw']
    scale_x, scale_y = data['scale_xy']
    sample = DetDataSample(
        metainfo=dict(
            img_shape=(int(height), int(width)),
            ori_shape=(int(ori_h), int(ori_w)),
            scale_factor=(float(scale_x), float(scale_y))))
    dets = InstanceData(
        bboxes=torch.from_numpy(data['proposal_boxes']),
        scores=torch.from_numpy(data['proposal_scores']),
        labels=torch.from_numpy(data['proposal_classes']).long())
    return head, x, sample, dets, data


def test_golden_roi_features_and_head_outputs(golden_run):
    head, x, sample, dets, data = golden_run
    with torch.no_grad():
        rois = bbox2roi([dets.bboxes])
        mask_results = head.mask_branch(x, rois, dets.labels,
                                        [sample.metainfo])
        mask_iou = mask_results['mask_iou_preds']
    feats = mask_results['mask_feats'].numpy()
    logits = mask_results['mask_preds'].numpy()
    case = f'{LITE}/coffee on golden FPN maps'
    assert_close(case, 'roi_feats_first16ch', feats[:, :16],
                 data['roi_feats_first16ch'], HEAD_RTOL)
    assert_close(case, 'roi_feats__ch_mean', feats.mean((2, 3)),
                 data['roi_feats__ch_mean'], HEAD_RTOL)
    assert_close(case, 'mask_logits_pred_class',
                 logits[np.arange(len(logits)), dets.labels.numpy()],
                 data['mask_logits_pred_class'], HEAD_RTOL)
    assert_close(case, 'mask_logits_all_first4', logits[:4],
                 data['mask_logits_all_first4'], HEAD_RTOL)
    assert_close(case, 'maskiou_pred', mask_iou.numpy(), data['maskiou_pred'],
                 HEAD_RTOL)


def test_golden_final_instances(golden_run):
    head, x, sample, dets, data = golden_run
    with torch.no_grad():
        results = head.predict(x, [dets], [sample], rescale=True)[0]
    assert len(results) == len(data['final_boxes'])
    np.testing.assert_allclose(
        results.bboxes.numpy(), data['final_boxes'], rtol=0, atol=0.01)
    np.testing.assert_array_equal(results.scores.numpy(), data['final_scores'])
    np.testing.assert_array_equal(results.labels.numpy(),
                                  data['final_classes'])
    np.testing.assert_allclose(
        results.mask_scores.numpy(),
        data['final_mask_scores'],
        rtol=0,
        atol=1e-5)
    assert mask_ious(results.masks.numpy(),
                     golden_masks(data)).min() >= MASK_IOU_MIN


def test_golden_masks_need_clipped_pasting(golden_run):
    """mmdet's pasting into the unclipped box misses centermask2's masks of
    the detections crossing the image border."""
    head, x, sample, dets, data = golden_run
    mmdet_head = lite_roi_head(clip_boxes=False)
    mmdet_head.load_state_dict(head.state_dict())
    mmdet_head.eval()
    with torch.no_grad():
        results = mmdet_head.predict(x, [dets], [sample], rescale=True)[0]
    assert mask_ious(results.masks.numpy(), golden_masks(data)).min() < 0.9
