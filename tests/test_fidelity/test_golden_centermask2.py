"""End-to-end fidelity against the authors' centermask2 (golden data).

For both golden variants (Lite-V-19-slim-dw and V-39) the synthetic
centermask2 weights are rebuilt with the golden ``make_weights.py`` (checked
by their state-dict sha256), converted with
:func:`mmcentermask.converters.centermask2.convert_centermask2` and loaded
strictly into the model built from our config. Then, stage by stage:

* inference on the recorded ``input_tensor``: backbone, FPN, raw FCOS
  outputs, FCOS post-processing (in isolation on the golden head outputs and
  end to end), RoI levels, RoI features, mask logits, MaskIoU, final
  instances at the original size;
* the full image path: PNG -> our test pipeline -> data preprocessor ->
  ``predict`` (with PIL resizing, as detectron2 and the configs; and,
  measured, with mmdet's default cv2 resizing);
* training mode on ``train_{coffee,moto_crop,batch2}``: FCOS targets,
  training proposals, foreground RoIs with their mask / MaskIoU targets and
  predictions, the five losses;
* ``tools/test.py`` with a checkpoint written by the converter CLI, against
  centermask2's own COCO-evaluator output.

Tolerances are those of the "Fidelity" issue (see the constants below);
where float32 noise upstream makes one unreachable end to end, the
constant's comment gives the cause and the measured figure
(``docs/fidelity.md`` has the table). Every failure names the stage and the
worst element. Set ``MMCM_FIDELITY_REPORT=path.json`` to dump the measured
errors. The V-39 cases (about 5 s per forward pass on 2 CPU threads) and the
tool run are marked ``slow``.
"""
import copy
import functools
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional
from unittest import mock

import numpy as np
import pytest
import torch
from golden_utils import (REPO_ROOT, expected_state_dict_sha256, golden_dir,
                          golden_state_dict, load_npz, make_weights_module,
                          require_golden_dir)
from mmcv.transforms import Compose
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import bbox2roi
from mmdet.structures.mask import PolygonMasks
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.structures import InstanceData

from mmcentermask.converters.centermask2 import (build_target_model,
                                                 convert_centermask2)

CONFIGS = {
    'lite_v19_slim_dw': 'configs/centermask/'
    'centermask-lite_vovnet-v2-19-slim-dw_fpn_ms-4x_coco.py',
    'v39': 'configs/centermask/centermask_vovnet-v2-39_fpn_ms-3x_coco.py',
}
#: state_dict sha256 of the synthetic weights, from the golden README
WEIGHTS_SHA256 = {
    'lite_v19_slim_dw':
    '09f49c85f93974a7585f8c51b008126b55d1632f76de96e633cba8777e9bbe5b',
    'v39': 'c68d9e23a8b2a649eb890c79aa705bc5bff5e337459054c929bbc2a6b9fd22e1',
}
LEVELS = (3, 4, 5, 6, 7)
STRIDES = (8, 16, 32, 64, 128)
NUM_CLASSES = 80
#: golden training runs -> images of the batch
TRAIN_IMAGES = {
    'train_coffee': ('coffee', ),
    'train_moto_crop': ('moto_crop', ),
    'train_batch2': ('coffee', 'moto_crop'),
}
LOSS_NAMES = {  # ours -> centermask2
    'loss_cls': 'loss_fcos_cls',
    'loss_bbox': 'loss_fcos_loc',
    'loss_centerness': 'loss_fcos_ctr',
    'loss_mask': 'loss_mask',
    'loss_mask_iou': 'loss_maskiou',
}

# -- tolerances (the issue's) ----------------------------------------------
#: backbone, FPN, raw FCOS outputs: max |err| <= FEATURE_RTOL * max |golden|
FEATURE_RTOL = 1e-4
#: FCOS post-processing, proposal boxes in px and scores
PROPOSAL_BOX_ATOL = 1e-3
PROPOSAL_SCORE_ATOL = 1e-5
#: End to end, a proposal box coordinate is location +- distance * stride, so
#: the float32 noise of the FCOS regression (relative ~3e-6 here) grows with
#: the box: 1e-3 px is met by the post-processing alone (on the golden head
#: outputs: bit-exact) but not end to end, where we measured up to 2.1e-3 px
#: (Lite) / 1.8e-2 px (V-39) on boxes of up to ~3000 px, i.e. <= 8.4e-6 of
#: the box side; centermask2 itself moves its boxes by 1.6e-3 / 8.4e-3 px
#: between 1 and 2 threads (README). End-to-end boxes are therefore held to
#: PROPOSAL_BOX_ATOL + PROPOSAL_BOX_RTOL * box side (docs/fidelity.md).
PROPOSAL_BOX_RTOL = 2e-5
#: RoI features, mask logits, MaskIoU: max |err| <= HEAD_RTOL * max |golden|
HEAD_RTOL = 1e-4
#: final instances at the original size
FINAL_BOX_ATOL = 0.01
FINAL_SCORE_ATOL = 1e-5
MASK_IOU_MIN = 0.99
#: training targets
TARGET_ATOL = 1e-5
#: MaskIoU targets count thresholded mask pixels: continuous only up to a
#: flipped pixel (README: "1e-3 level")
MASKIOU_TARGET_ATOL = 1e-3
LOSS_RTOL = 1e-4
LOSS_MASKIOU_RTOL = 5e-3  # README: a thresholded mask pixel may flip

MEASURED: Dict[str, Dict[str, float]] = {}

V39_SLOW = pytest.mark.slow
VARIANT_PARAMS = [
    'lite_v19_slim_dw',
    pytest.param('v39', marks=V39_SLOW),
]
INFER_PARAMS = [
    pytest.param(v, i, marks=(V39_SLOW, ) if v == 'v39' else ())
    for v in CONFIGS for i in ('coffee', 'moto_crop')
]
TRAIN_PARAMS = [
    pytest.param(v, r, marks=(V39_SLOW, ) if v == 'v39' else ())
    for v in CONFIGS for r in TRAIN_IMAGES
]


@pytest.fixture(scope='module', autouse=True)
def two_threads():
    """centermask2's golden run used 2 threads; fixing the count makes the
    float32 summation order (and so the measured errors) reproducible."""
    require_golden_dir()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)
    report = os.environ.get('MMCM_FIDELITY_REPORT')
    if report and MEASURED:
        Path(report).write_text(json.dumps(MEASURED, indent=1, sort_keys=True))


# --------------------------------------------------------------------------
# comparison helpers: every failure names the stage and the worst element
# --------------------------------------------------------------------------


def record(case: str, stage: str, value: float) -> None:
    MEASURED.setdefault(case, {})[stage] = max(
        float(value),
        MEASURED.get(case, {}).get(stage, 0.))


def assert_close(case: str,
                 stage: str,
                 ours,
                 golden,
                 rtol_of_max: float = 0.,
                 atol: float = 0.) -> None:
    """max |ours - golden| <= atol + rtol_of_max * max |golden|."""
    ours = np.asarray(ours, dtype=np.float64)
    golden = np.asarray(golden, dtype=np.float64)
    assert ours.shape == golden.shape, (
        f'{case} {stage}: shape {ours.shape} vs golden {golden.shape}')
    if golden.size == 0:
        return
    diff = np.abs(ours - golden)
    worst = np.unravel_index(np.argmax(diff), diff.shape)
    err, scale = diff[worst], np.abs(golden).max()
    tol = atol + rtol_of_max * scale
    record(case, stage + (' (rel)' if rtol_of_max else ' (abs)'),
           err / scale if rtol_of_max else err)
    assert err <= tol, (
        f'{case} {stage}: max |ours - golden| = {err:.4g} > {tol:.4g} '
        f'(atol {atol:g} + {rtol_of_max:g} x max|golden| {scale:.4g}); '
        f'worst element {tuple(int(i) for i in worst)}: ours '
        f'{ours[worst]:.9g}, golden {golden[worst]:.9g}')


def assert_equal(case: str, stage: str, ours, golden) -> None:
    ours, golden = np.asarray(ours), np.asarray(golden)
    assert ours.shape == golden.shape, (
        f'{case} {stage}: shape {ours.shape} vs golden {golden.shape}')
    wrong = np.argwhere(ours != golden)
    record(case, stage + ' (#different)', len(wrong))
    assert len(wrong) == 0, (
        f'{case} {stage}: {len(wrong)} of {ours.size} elements differ; '
        f'first {tuple(int(i) for i in wrong[0])}: ours '
        f'{ours[tuple(wrong[0])]}, golden {golden[tuple(wrong[0])]}')


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-12)


def match_detections(case: str, stage: str, ours_boxes: np.ndarray,
                     ours_labels: np.ndarray, golden_boxes: np.ndarray,
                     golden_labels: np.ndarray) -> np.ndarray:
    """Index into ours of every golden detection (order-insensitive, README):
    same class and the closest box, one to one (greedy on the largest
    coordinate difference relative to the box side; zero-area FCOS boxes
    exist, so no IoU). A match must be within a quarter of the box side."""
    assert len(ours_boxes) == len(golden_boxes), (
        f'{case} {stage}: {len(ours_boxes)} detections, golden '
        f'{len(golden_boxes)}')
    golden_boxes = golden_boxes.astype(np.float64)
    side = np.maximum(golden_boxes[:, 2:] - golden_boxes[:, :2], 1.).max(1)
    cost = np.abs(golden_boxes[:, None] -
                  ours_boxes[None].astype(np.float64)).max(-1) / side[:, None]
    cost[golden_labels[:, None] != ours_labels[None]] = np.inf
    index = np.full(len(golden_boxes), -1)
    for flat in np.argsort(cost, axis=None):
        i, j = np.unravel_index(flat, cost.shape)
        if not np.isfinite(cost[i, j]) or cost[i, j] > 0.25:
            break
        if index[i] < 0 and j not in index:
            index[i] = j
    unmatched = np.nonzero(index < 0)[0]
    assert len(unmatched) == 0, (
        f'{case} {stage}: golden detections without a same-class match: '
        f'{unmatched.tolist()}, e.g. class {golden_labels[unmatched[0]]} box '
        f'{golden_boxes[unmatched[0]]}')
    return index


def assert_same_order(case: str, stage: str, index: np.ndarray,
                      golden_scores: np.ndarray) -> None:
    """Same order as centermask2, except swaps of detections whose golden
    scores are tied within the score tolerance."""
    moved = np.nonzero(index != np.arange(len(index)))[0]
    for i in moved:
        j = int(np.nonzero(index == i)[0][0]) if i in index else i
        gap = abs(float(golden_scores[i]) - float(golden_scores[j]))
        assert gap <= 2 * PROPOSAL_SCORE_ATOL, (
            f'{case} {stage}: golden detection {i} is our #{index[i]}, but '
            f'its score differs from golden #{j} by {gap:.3g} '
            f'(> ties within {2 * PROPOSAL_SCORE_ATOL:g})')


def assert_boxes_close(case: str, stage: str, ours: np.ndarray,
                       golden: np.ndarray, atol: float, rtol_of_side: float):
    """|ours - golden| <= atol + rtol_of_side * max(w, h) of the golden box,
    per coordinate."""
    ours, golden = ours.astype(np.float64), golden.astype(np.float64)
    side = np.maximum(golden[:, 2] - golden[:, 0], golden[:, 3] - golden[:, 1])
    tol = atol + rtol_of_side * np.abs(side)[:, None]
    diff = np.abs(ours - golden)
    ratio = diff / tol
    worst = np.unravel_index(np.argmax(ratio), ratio.shape)
    record(case, stage + ' (px)', diff.max())
    if rtol_of_side:
        record(case, stage + ' (rel. to box side)',
               (diff / np.maximum(np.abs(side)[:, None], 1.)).max())
    assert ratio[worst] <= 1, (
        f'{case} {stage}: box {worst[0]} coordinate {worst[1]} differs by '
        f'{diff[worst]:.4g} px > {tol[worst]:.4g} (atol {atol:g} + '
        f'{rtol_of_side:g} x side {side[worst[0]]:.1f}); ours '
        f'{ours[worst[0]]}, golden {golden[worst[0]]}')


def mask_ious(ours: np.ndarray, golden: np.ndarray) -> np.ndarray:
    inter = (ours & golden).sum((1, 2))
    union = (ours | golden).sum((1, 2))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.)


def golden_masks(data: Dict[str, np.ndarray]) -> np.ndarray:
    width = int(data['orig_hw'][1])
    return np.unpackbits(
        data['final_masks_packed'], axis=-1)[..., :width].astype(bool)


# --------------------------------------------------------------------------
# model and runs (cached: each forward pass runs once per session)
# --------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def converted_model(variant: str):
    """Golden weights (sha256-checked) -> converter -> our model."""
    module = make_weights_module()
    weights = golden_state_dict(variant)
    sha = module.state_dict_sha256(weights)
    assert sha == WEIGHTS_SHA256[variant] == expected_state_dict_sha256(
        variant), f'{variant}: rebuilt golden weights have sha256 {sha}'
    config = str(REPO_ROOT / CONFIGS[variant])
    model = build_target_model(config)
    conversion = convert_centermask2(
        weights, config, target=model.state_dict())
    model.load_state_dict(conversion.state_dict, strict=True)
    return model, Config.fromfile(config), conversion


def image_meta(data: Dict[str, np.ndarray], padded_hw) -> dict:
    (height, width), (ori_h, ori_w) = data['resized_hw'], data['orig_hw']
    scale_x, scale_y = data['scale_xy']
    return dict(
        img_shape=(int(height), int(width)),
        ori_shape=(int(ori_h), int(ori_w)),
        scale_factor=(float(scale_x), float(scale_y)),
        pad_shape=tuple(int(v) for v in padded_hw),
        batch_input_shape=tuple(int(v) for v in padded_hw))


@functools.lru_cache(maxsize=None)
def infer_run(variant: str, image: str) -> dict:
    """Every stage of our inference on the recorded input tensor."""
    model, _, _ = converted_model(variant)
    model.eval()
    data = load_npz(variant, f'{image}_infer')
    inputs = torch.from_numpy(data['input_tensor'])[None]
    meta = image_meta(data, inputs.shape[-2:])
    head, roi_head = model.bbox_head, model.roi_head
    with torch.no_grad():
        backbone = model.backbone(inputs)
        fpn = model.neck(backbone)
        cls, reg, ctr = head(fpn)
        dets = head.predict_by_feat(
            cls, reg, ctr, batch_img_metas=[meta], rescale=False)[0]
        golden_index = match_detections(f'{variant}/{image}', 'proposals',
                                        dets.bboxes.numpy(),
                                        dets.labels.numpy(),
                                        data['proposal_boxes'],
                                        data['proposal_classes'])
        # mask branch on our detections, in the golden order
        ordered = dets[torch.from_numpy(golden_index)]
        rois = bbox2roi([ordered.bboxes])
        extractor = roi_head.mask_roi_extractor
        levels = extractor.map_roi_levels(
            rois, extractor.roi_image_areas(fpn, rois, [meta])) + LEVELS[0]
        mask_results = roi_head._mask_forward(fpn, rois, [meta])
        mask_iou = roi_head._mask_iou_forward(mask_results, ordered.labels)
        final = roi_head.predict(
            fpn, [dets], [DetDataSample(metainfo=meta)], rescale=True)[0]
    return dict(
        data=data,
        backbone=[t[0].numpy() for t in backbone],
        fpn=[t[0].numpy() for t in fpn],
        cls=[t[0].numpy() for t in cls],
        reg=[t[0].numpy() / s for t, s in zip(reg, STRIDES)],
        ctr=[t[0].numpy() for t in ctr],
        dets=dets,
        golden_index=golden_index,
        levels=levels.numpy(),
        roi_feats=mask_results['mask_feats'].numpy(),
        mask_logits=mask_results['mask_preds'].numpy(),
        mask_iou=mask_iou.numpy(),
        final=final)


def check_final_instances(case: str, final: InstanceData,
                          data: Dict[str, np.ndarray]) -> None:
    """Final instances at the original size against centermask2's."""
    index = match_detections(case, 'final instances', final.bboxes.numpy(),
                             final.labels.numpy(), data['final_boxes'],
                             data['final_classes'])
    assert_boxes_close(case, 'final boxes',
                       final.bboxes.numpy()[index], data['final_boxes'],
                       FINAL_BOX_ATOL, 0.)
    assert_close(
        case,
        'final scores',
        final.scores.numpy()[index],
        data['final_scores'],
        atol=FINAL_SCORE_ATOL)
    assert_equal(case, 'final classes',
                 final.labels.numpy()[index], data['final_classes'])
    assert_close(
        case,
        'final mask_scores',
        final.mask_scores.numpy()[index],
        data['final_mask_scores'],
        atol=FINAL_SCORE_ATOL)
    ious = mask_ious(final.masks.numpy()[index], golden_masks(data))
    worst = int(ious.argmin())
    MEASURED.setdefault(case, {})['final mask IoU (min)'] = float(ious.min())
    assert ious.min() >= MASK_IOU_MIN, (
        f'{case} final masks: IoU {ious[worst]:.4f} < {MASK_IOU_MIN} for '
        f'golden instance {worst} (class {data["final_classes"][worst]})')


# --------------------------------------------------------------------------
# weights and conversion
# --------------------------------------------------------------------------


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


def _subset_and_stats(case: str, stage: str, ours: np.ndarray,
                      data: Dict[str, np.ndarray], prefix: str) -> None:
    """Compare a (C, h, w) map with ``<prefix>__subset`` / ``__channels``
    (or the full map) and the per-channel statistics of all channels."""
    assert tuple(data[f'{prefix}__shape'][1:]) == ours.shape, (
        f'{case} {stage}: shape {ours.shape} vs golden '
        f'{tuple(data[prefix + "__shape"][1:])}')
    if f'{prefix}__subset' in data:
        channels = data[f'{prefix}__channels']
        assert_close(case, f'{stage} subset', ours[channels],
                     data[f'{prefix}__subset'], FEATURE_RTOL)
    else:
        assert_close(case, f'{stage} full map', ours, data[prefix],
                     FEATURE_RTOL)
    flat = ours.reshape(ours.shape[0], -1).astype(np.float64)
    for stat, value in (('mean', flat.mean(1)), ('std', flat.std(1)),
                        ('min', flat.min(1)), ('max', flat.max(1))):
        golden = data[f'{prefix}__ch_{stat}']
        # statistics of the map: relative to the map's magnitude
        scale = max(
            np.abs(data[f'{prefix}__ch_min']).max(),
            np.abs(data[f'{prefix}__ch_max']).max())
        err = np.abs(value - golden)
        worst = int(err.argmax())
        record(case, f'{stage} ch_{stat} (rel)', err.max() / scale)
        assert err.max() <= FEATURE_RTOL * scale, (
            f'{case} {stage} ch_{stat}: channel {worst} ours '
            f'{value[worst]:.9g} golden {golden[worst]:.9g} (err '
            f'{err.max():.3g} > {FEATURE_RTOL} x {scale:.4g})')


@pytest.mark.parametrize('variant,image', INFER_PARAMS)
def test_backbone(variant, image):
    run = infer_run(variant, image)
    for ours, stage in zip(run['backbone'], ('stage3', 'stage4', 'stage5')):
        _subset_and_stats(f'{variant}/{image}', f'backbone {stage}', ours,
                          run['data'], f'backbone_{stage}')


@pytest.mark.parametrize('variant,image', INFER_PARAMS)
def test_fpn(variant, image):
    run = infer_run(variant, image)
    for ours, level in zip(run['fpn'], LEVELS):
        _subset_and_stats(f'{variant}/{image}', f'FPN P{level}', ours,
                          run['data'], f'fpn_p{level}')


@pytest.mark.parametrize('variant,image', INFER_PARAMS)
def test_fcos_raw_outputs(variant, image):
    run, case = infer_run(variant, image), f'{variant}/{image}'
    data = run['data']
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
    """FCOS post-processing alone: the golden head outputs through ours."""
    model, _, _ = converted_model(variant)
    data, case = load_npz(variant, f'{image}_infer'), f'{variant}/{image}'
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
    assert_close(case, 'RoI features (ch 0-15)', feats[:, :16],
                 data['roi_feats_first16ch'], HEAD_RTOL)
    assert_close(case, 'RoI features channel means', feats.mean((2, 3)),
                 data['roi_feats__ch_mean'], HEAD_RTOL)
    assert_close(case, 'mask logits (predicted class)',
                 logits[np.arange(len(logits)),
                        classes], data['mask_logits_pred_class'], HEAD_RTOL)
    assert_close(case, 'mask logits (all classes, first 4 RoIs)', logits[:4],
                 data['mask_logits_all_first4'], HEAD_RTOL)
    assert_close(case, 'MaskIoU', run['mask_iou'], data['maskiou_pred'],
                 HEAD_RTOL)


@pytest.mark.parametrize('variant,image', INFER_PARAMS)
def test_final_instances(variant, image):
    run = infer_run(variant, image)
    check_final_instances(f'{variant}/{image}', run['final'], run['data'])


# --------------------------------------------------------------------------
# full image path: PNG -> our pipeline -> preprocessor -> predict
# --------------------------------------------------------------------------


def build_test_pipeline(cfg: Config, backend: Optional[str]) -> Compose:
    """The config's test pipeline without the annotation loading, with the
    resize ``backend`` overridden (None: the config's)."""
    steps = [
        copy.deepcopy(step) for step in cfg.test_pipeline
        if step['type'] != 'LoadAnnotations'
    ]
    for step in steps:
        if step['type'] == 'Resize' and backend is not None:
            step['backend'] = backend
    return Compose(steps)


def image_path_run(variant: str,
                   image: str,
                   backend: Optional[str],
                   predict: bool = True):
    """(our normalised padded input, its metainfo, golden data, final
    instances or None)."""
    model, cfg, _ = converted_model(variant)
    model.eval()
    pipeline = build_test_pipeline(cfg, backend)
    sample = pipeline(
        dict(img_path=str(golden_dir() / 'images' / f'{image}.png'), img_id=0))
    data = load_npz(variant, f'{image}_infer')
    with torch.no_grad():
        batch = model.data_preprocessor(pseudo_collate([sample]), False)
        final = model.predict(batch['inputs'], batch['data_samples'])[0] \
            if predict else None
    return (batch['inputs'][0].numpy(), batch['data_samples'][0].metainfo,
            data, final.pred_instances if predict else None)


@pytest.mark.parametrize('variant,image', INFER_PARAMS)
def test_image_path_with_pil_resize(variant, image):
    """With ``Resize(backend='pillow')`` (detectron2 resizes with PIL
    bilinear) our pipeline feeds the network the recorded tensor bit for
    bit, so the final instances meet the final tolerances. (V-39 moto_crop:
    input and metas only; its forward pass would repeat test_final_instances
    on the same tensor.)"""
    case = f'{variant}/{image} image path (pillow)'
    predict = not (variant == 'v39' and image == 'moto_crop')
    inputs, meta, data, final = image_path_run(variant, image, 'pillow',
                                               predict)
    assert_equal(case, 'network input', inputs, data['input_tensor'])
    expected = image_meta(data, data['input_tensor'].shape[-2:])
    for key in ('img_shape', 'ori_shape', 'batch_input_shape'):
        assert tuple(meta[key]) == expected[key], (case, key, meta[key])
    assert np.allclose(
        meta['scale_factor'], expected['scale_factor'],
        rtol=1e-12), (case, meta['scale_factor'])
    if predict:
        check_final_instances(case, final, data)


@pytest.mark.slow
@pytest.mark.parametrize('image', ['coffee', 'moto_crop'])
def test_image_path_with_config_cv2_resize(image):
    """``Resize(backend='cv2')`` (mmdet's default; the configs use pillow):
    its bilinear result differs from PIL's by one grey level in 20-30 % of
    the pixels, which the synthetic network amplifies (docs/fidelity.md).
    Asserted: the input differs by at most one level and the same objects
    are found."""
    variant = 'lite_v19_slim_dw'
    case = f'{variant}/{image} image path (cv2)'
    inputs, _, data, final = image_path_run(variant, image, 'cv2')
    height, width = (int(v) for v in data['resized_hw'])
    level_diff = np.abs(inputs - data['input_tensor'])[:, :height, :width]
    record(case, 'network input (max grey levels)', level_diff.max())
    record(case, 'network input (fraction of values differing)', (level_diff
                                                                  > 0).mean())
    assert level_diff.max() <= 1 + 1e-4, level_diff.max()
    iou = box_iou(data['final_boxes'].astype(np.float64),
                  final.bboxes.numpy().astype(np.float64))
    iou[data['final_classes'][:, None] != final.labels.numpy()[None]] = -1
    best, index = iou.max(1), iou.argmax(1)
    found = best >= 0.9
    score_err = np.abs(final.scores.numpy()[index] - data['final_scores'])
    box_err = np.abs(final.bboxes.numpy()[index] - data['final_boxes'])
    ious = mask_ious(final.masks.numpy()[index], golden_masks(data))
    record(case, 'golden detections matched (IoU >= 0.9)', found.sum())
    record(case, 'final boxes of matched (px)', box_err[found].max())
    record(case, 'final scores of matched (abs)', score_err[found].max())
    MEASURED[case].update({
        'final mask IoU of matched (min)':
        float(ious[found].min()),
        'final mask IoU of matched (median)':
        float(np.median(ious[found]))
    })
    assert found.sum() >= 0.9 * len(found), (
        f'{case}: only {found.sum()} of {len(found)} golden detections found')
    assert found[:10].all() and score_err[:10].max() <= 0.02, (
        f'{case}: top-10 golden detections: found {found[:10]}, score errors '
        f'{score_err[:10]}')


# --------------------------------------------------------------------------
# training mode
# --------------------------------------------------------------------------


def golden_annotations() -> dict:
    return json.loads(
        (golden_dir() / 'images' / 'annotations.json').read_text())


def gt_instances(image: str, data: Dict[str, np.ndarray]) -> InstanceData:
    """GT of ``annotations.json`` as detectron2's
    ``transform_instance_annotations`` gives it: boxes and polygons scaled by
    the x / y resize factors, boxes clipped to the resized image."""
    annotations = golden_annotations()
    image_id = next(im['id'] for im in annotations['images']
                    if im['file_name'] == f'{image}.png')
    objects = [
        a for a in annotations['annotations'] if a['image_id'] == image_id
    ]
    scale_x, scale_y = data['scale_xy']
    height, width = (int(v) for v in data['resized_hw'])
    boxes = np.array([a['bbox_xyxy'] for a in objects], dtype=np.float64)
    boxes = np.minimum(boxes * [scale_x, scale_y, scale_x, scale_y],
                       [width, height, width, height])
    polygons = []
    for obj in objects:
        scaled = []
        for polygon in obj['segmentation']:
            polygon = np.asarray(polygon, dtype=np.float64).copy()
            polygon[0::2] *= scale_x
            polygon[1::2] *= scale_y
            scaled.append(polygon)
        polygons.append(scaled)
    return InstanceData(
        bboxes=torch.from_numpy(boxes).float(),
        labels=torch.tensor([a['class_index'] for a in objects]),
        masks=PolygonMasks(polygons, height, width))


@functools.lru_cache(maxsize=None)
def train_run(variant: str, run: str) -> dict:
    """One training forward pass (``model.loss``) on the golden batch, with
    the intermediate results captured from the real code path."""
    model, _, _ = converted_model(variant)
    golden = load_npz(variant, run)
    shape = tuple(int(v) for v in golden['input_tensor_shape'])
    inputs = torch.zeros(shape)
    samples = []
    for i, image in enumerate(TRAIN_IMAGES[run]):
        data = load_npz(variant, f'{image}_infer',
                        ['input_tensor', 'resized_hw', 'orig_hw', 'scale_xy'])
        height, width = (int(v) for v in data['resized_hw'])
        inputs[i, :, :height, :width] = torch.from_numpy(
            data['input_tensor'][:, :height, :width])
        sample = DetDataSample(metainfo=image_meta(data, shape[-2:]))
        sample.gt_instances = gt_instances(image, data)
        samples.append(sample)

    captured = {}

    def capture(name, method):

        def wrapper(*args, **kwargs):
            out = method(*args, **kwargs)
            captured[name] = (args, out)
            return out

        return wrapper

    head, roi_head = model.bbox_head, model.roi_head
    model.train()
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    try:
        with torch.no_grad(), \
                mock.patch.object(head, 'forward',
                                  capture('head', head.forward)), \
                mock.patch.object(head, 'loss_and_predict',
                                  capture('fcos', head.loss_and_predict)), \
                mock.patch.object(roi_head, 'mask_loss',
                                  capture('mask', roi_head.mask_loss)):
            losses = model.loss(inputs, samples)
            # what the losses were computed from
            cls_scores = captured['head'][1][0]
            points = head.prior_generator.grid_priors(
                [c.shape[-2:] for c in cls_scores],
                dtype=torch.float32,
                device='cpu')
            gts = [s.gt_instances for s in samples]
            labels, bbox_targets = head.get_targets(points, gts)
            (x, sampling_results, *_), mask_results = captured['mask']
            pos_labels = torch.cat([r.pos_gt_labels for r in sampling_results])
            rows = torch.arange(len(pos_labels))
            pos_logits = mask_results['mask_preds'][rows, pos_labels]
            mask_iou = roi_head._mask_iou_forward(mask_results,
                                                  pos_labels)[rows, pos_labels]
            mask_iou_targets = roi_head.mask_iou_head.get_targets(
                sampling_results, gts, pos_logits,
                mask_results['mask_targets'], roi_head.train_cfg)
            rois = bbox2roi([r.pos_priors for r in sampling_results])
            extractor = roi_head.mask_roi_extractor
            levels = extractor.map_roi_levels(
                rois,
                extractor.roi_image_areas(x, rois,
                                          [s.metainfo for s in samples]))
    finally:
        model.eval()
    return dict(
        golden=golden,
        samples=samples,
        losses={
            k: float(v)
            for k, v in losses.items()
        },
        labels=labels,
        bbox_targets=bbox_targets,
        centerness_target=head.centerness_target,
        proposals=captured['fcos'][1][1],
        fg_boxes=rois[:, 1:].numpy(),
        fg_images=rois[:, 0].long().numpy(),
        fg_classes=pos_labels.numpy(),
        fg_levels=levels.numpy() + LEVELS[0],
        mask_targets=mask_results['mask_targets'].numpy(),
        mask_logits=pos_logits.numpy(),
        mask_iou=mask_iou.numpy(),
        mask_iou_targets=mask_iou_targets.double().numpy())


@pytest.mark.parametrize('variant,run', TRAIN_PARAMS)
def test_train_gt_construction(variant, run):
    """Our rebuilt GT equals the GT centermask2 received."""
    result, case = train_run(variant, run), f'{variant}/{run}'
    for i, sample in enumerate(result['samples']):
        assert_equal(case, f'GT boxes img{i}', sample.gt_instances.bboxes,
                     result['golden'][f'gt_boxes_img{i}'])
        assert_equal(case, f'GT classes img{i}', sample.gt_instances.labels,
                     result['golden'][f'gt_classes_img{i}'])


@pytest.mark.parametrize('variant,run', TRAIN_PARAMS)
def test_train_fcos_targets(variant, run):
    result, case = train_run(variant, run), f'{variant}/{run}'
    golden = result['golden']
    num_pos = 0
    for lvl, level in enumerate(LEVELS):
        golden_labels = golden[f'fcos_labels_p{level}']
        labels = result['labels'][lvl].reshape(golden_labels.shape).numpy()
        assert_equal(case, f'FCOS labels P{level}', labels, golden_labels)
        pos = golden_labels != NUM_CLASSES
        num_pos += int(pos.sum())
        targets = result['bbox_targets'][lvl].reshape(*golden_labels.shape, 4)
        assert_close(
            case,
            f'FCOS regression targets P{level}',
            targets.numpy()[pos],
            golden[f'fcos_reg_targets_p{level}'][pos],
            atol=TARGET_ATOL)
        centerness = result['centerness_target'](
            targets[torch.from_numpy(pos)]) if pos.any() else torch.zeros(0)
        assert_close(
            case,
            f'FCOS centerness targets P{level}',
            centerness.numpy(),
            golden[f'fcos_ctr_targets_p{level}'][pos],
            atol=TARGET_ATOL)
    assert num_pos == int(golden['fcos_num_pos']), (
        f'{case} FCOS number of positives: {num_pos} vs golden '
        f'{int(golden["fcos_num_pos"])}')


@pytest.mark.parametrize('variant,run', TRAIN_PARAMS)
def test_train_proposals(variant, run):
    result, case = train_run(variant, run), f'{variant}/{run}'
    golden = result['golden']
    for i, proposals in enumerate(result['proposals']):
        stage = f'training proposals img{i}'
        index = match_detections(case, stage, proposals.bboxes.numpy(),
                                 proposals.labels.numpy(),
                                 golden[f'train_proposal_boxes_img{i}'],
                                 golden[f'train_proposal_classes_img{i}'])
        assert_same_order(case, stage, index,
                          golden[f'train_proposal_scores_img{i}'])
        assert_boxes_close(case, stage + ' boxes',
                           proposals.bboxes.numpy()[index],
                           golden[f'train_proposal_boxes_img{i}'],
                           PROPOSAL_BOX_ATOL, PROPOSAL_BOX_RTOL)
        assert_close(
            case,
            stage + ' scores',
            proposals.scores.numpy()[index],
            golden[f'train_proposal_scores_img{i}'],
            atol=PROPOSAL_SCORE_ATOL)


@pytest.mark.parametrize('variant,run', TRAIN_PARAMS)
def test_train_mask_branch(variant, run):
    """Foreground RoIs sorted by (image, x1, y1, x2, y2, class) as in the
    golden file, their targets and predictions."""
    result, case = train_run(variant, run), f'{variant}/{run}'
    golden = result['golden']
    boxes, classes = result['fg_boxes'], result['fg_classes']
    order = np.lexsort((classes, boxes[:, 3], boxes[:, 2], boxes[:, 1],
                        boxes[:, 0], result['fg_images']))
    assert len(order) == len(golden['mask_fg_boxes']), (
        f'{case} foreground RoIs: {len(order)} vs golden '
        f'{len(golden["mask_fg_boxes"])}')
    assert_equal(case, 'foreground RoI images', result['fg_images'][order],
                 golden['mask_fg_img_index'])
    assert_equal(case, 'foreground RoI GT classes', classes[order],
                 golden['mask_fg_gt_classes'])
    assert_boxes_close(case, 'foreground RoI boxes', boxes[order],
                       golden['mask_fg_boxes'], PROPOSAL_BOX_ATOL,
                       PROPOSAL_BOX_RTOL)
    assert_equal(case, 'foreground RoI levels', result['fg_levels'][order],
                 golden['mask_fg_levels'])
    golden_targets = np.unpackbits(
        golden['mask_fg_targets_packed'], axis=-1)[..., :28]
    assert_equal(case, 'mask targets', result['mask_targets'][order],
                 golden_targets.astype(np.float32))
    assert_close(case, 'mask logits (GT class)', result['mask_logits'][order],
                 golden['mask_fg_logits_gt_class'], HEAD_RTOL)
    assert_close(case, 'MaskIoU (GT class)', result['mask_iou'][order],
                 golden['maskiou_pred_gt_class'], HEAD_RTOL)
    assert_close(
        case,
        'MaskIoU targets',
        result['mask_iou_targets'][order],
        golden['maskiou_targets'],
        atol=MASKIOU_TARGET_ATOL)


@pytest.mark.parametrize('variant,run', TRAIN_PARAMS)
def test_train_losses(variant, run):
    result, case = train_run(variant, run), f'{variant}/{run}'
    for ours, theirs in LOSS_NAMES.items():
        rtol = LOSS_MASKIOU_RTOL if ours == 'loss_mask_iou' else LOSS_RTOL
        value = result['losses'][ours]
        golden = float(result['golden'][f'loss__{theirs}'])
        err = abs(value - golden) / abs(golden)
        record(case, f'{ours} (rel)', err)
        assert err <= rtol, (
            f'{case} {ours} (centermask2 {theirs}): {value:.9g} vs golden '
            f'{golden:.9g}, relative error {err:.3g} > {rtol:g}')


# --------------------------------------------------------------------------
# converter CLI + tools/test.py against centermask2's COCO evaluator output
# --------------------------------------------------------------------------

DERIVED_CONFIG = """
_base_ = {base!r}
data_root = {data_root!r}
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale={scale!r}, keep_ratio=True, backend='pillow'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True,
         poly2mask=False),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))]
test_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, ann_file='annotations.json',
                 data_prefix=dict(img=''), pipeline=test_pipeline))
test_evaluator = dict(ann_file=data_root + 'annotations.json',
                      outfile_prefix={prefix!r})
"""


def run_script(*args) -> str:
    env = dict(os.environ, OMP_NUM_THREADS='2')
    proc = subprocess.run([sys.executable, *args],
                          cwd=REPO_ROOT,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=900)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    return output


@pytest.mark.slow
def test_converter_cli_and_tools_test_match_centermask2_evaluator(tmp_path):
    """centermask2-style .pth -> converter CLI -> tools/test.py on the
    golden images; the COCO json results equal centermask2's own
    ``coco_instances_results.json`` (Lite variant)."""
    import pycocotools.mask as mask_utils
    variant = 'lite_v19_slim_dw'
    src, dst = tmp_path / 'c2_model_final.pth', tmp_path / 'converted.pth'
    torch.save({'model': golden_state_dict(variant), 'iteration': 0}, src)
    out = run_script('tools/model_converters/centermask2_to_mmdet.py',
                     str(src), str(dst), '--config', CONFIGS[variant])
    assert '194 source tensors, 194 converted, 0 dropped' in out, out
    cfg = Config.fromfile(str(REPO_ROOT / CONFIGS[variant]))
    scale = next(s['scale'] for s in cfg.test_pipeline
                 if s['type'] == 'Resize')
    config = tmp_path / 'golden_images.py'
    config.write_text(
        DERIVED_CONFIG.format(
            base=str(REPO_ROOT / CONFIGS[variant]),
            data_root=str(golden_dir() / 'images') + '/',
            scale=tuple(scale),
            prefix=str(tmp_path / 'results')))
    out = run_script('tools/test.py', str(config), str(dst), '--work-dir',
                     str(tmp_path / 'work'))
    assert 'Load checkpoint from' in out
    for marker in ('missing keys', 'unexpected key'):
        assert marker not in out, out[-4000:]

    theirs = json.loads(
        (golden_dir() / variant / 'coco_instances_results.json').read_text())
    bbox = json.loads((tmp_path / 'results.bbox.json').read_text())
    segm = json.loads((tmp_path / 'results.segm.json').read_text())
    case = f'{variant} tools/test.py'
    for image_id in sorted({r['image_id'] for r in theirs}):
        golden = [r for r in theirs if r['image_id'] == image_id]
        ours_b = [r for r in bbox if r['image_id'] == image_id]
        ours_s = [r for r in segm if r['image_id'] == image_id]
        xyxy = lambda rs: np.array(  # noqa: E731
            [[x, y, x + w, y + h] for x, y, w, h in (r['bbox'] for r in rs)])
        index = match_detections(case, f'image {image_id}', xyxy(ours_b),
                                 np.array([r['category_id'] for r in ours_b]),
                                 xyxy(golden),
                                 np.array([r['category_id'] for r in golden]))
        assert_boxes_close(case, 'json boxes (xywh -> xyxy)',
                           xyxy(ours_b)[index], xyxy(golden), FINAL_BOX_ATOL,
                           0.)
        assert_close(
            case,
            'json bbox scores', [ours_b[j]['score'] for j in index],
            [r['score'] for r in golden],
            atol=FINAL_SCORE_ATOL)
        assert_close(
            case,
            'json segm scores = mask_score',
            [ours_s[j]['score'] for j in index],
            [r['mask_score'] for r in golden],
            atol=FINAL_SCORE_ATOL)
        ours_masks = mask_utils.decode(
            [ours_s[j]['segmentation'] for j in index]).astype(bool)
        golden_rles = [dict(r['segmentation']) for r in golden]
        for rle in golden_rles:
            if isinstance(rle['counts'], str):
                rle['counts'] = rle['counts'].encode()
        golden_m = mask_utils.decode(golden_rles).astype(bool)
        ious = mask_ious(
            np.moveaxis(ours_masks, -1, 0), np.moveaxis(golden_m, -1, 0))
        MEASURED.setdefault(case, {})[f'image {image_id} mask IoU (min)'] = \
            float(ious.min())
        assert ious.min() >= MASK_IOU_MIN, (
            f'{case} image {image_id}: mask IoU {ious.min():.4f} for golden '
            f'detection {int(ious.argmin())}')
