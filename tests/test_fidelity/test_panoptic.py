"""Panoptic-CenterMask V-39 against centermask2's ``PanopticFPN``: weights
and conversion, FPN P2-P7, the semantic logits (stride 4 and at the original
size) and argmax, the instance detections, the panoptic map.

The golden run used ``INSTANCES_CONFIDENCE_THRESH = 0.2`` (its README: the
synthetic weights give box scores below 0.4); our model is built with the
same ``test_cfg.panoptic.score_thr``. One forward pass per image (about 5 s
on 2 CPU threads), so the module is marked ``slow``.
"""
import functools
import json
from typing import Dict, List, Tuple
from unittest import mock

import numpy as np
import pytest
import torch
from fidelity_utils import (FEATURE_RTOL, PROPOSAL_BOX_ATOL, PROPOSAL_BOX_RTOL,
                            PROPOSAL_SCORE_ATOL, assert_boxes_close,
                            assert_close, assert_equal, assert_same_order,
                            check_final_instances, image_meta,
                            match_detections, record)
from fidelity_utils import two_threads  # noqa: F401 (autouse fixture)
from golden_utils import (REPO_ROOT, golden_dir, load_npz, make_weights_module)
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.structures import DetDataSample
from mmengine.config import Config

from mmcentermask.converters import build_target_model, convert_centermask2

pytestmark = pytest.mark.slow

VARIANT = 'panoptic_v39'
CONFIG = ('configs/centermask-panoptic/'
          'panoptic-centermask_vovnet-v2-39_fpn_ms-3x_coco.py')
#: state_dict sha256 of the synthetic weights, from the golden README
WEIGHTS_SHA256 = (
    '0ac12bda37c405bef380df4eacd4d002dde2b51deefeb327961f5671e0632f0d')
IMAGES = ('coffee', 'moto_crop')
FPN_LEVELS = (2, 3, 4, 5, 6, 7)
NUM_THINGS = 80
NUM_STUFF = 53
#: the issue's acceptance for the discrete outputs
MIN_EQUAL_PIXELS = 0.999
SEGMENT_AREA_RTOL = 1e-3
#: every 4th row and column of the stride-4 logits in the compact set
LOGITS_STEP = 4


def golden_meta() -> dict:
    return json.loads((golden_dir() / VARIANT / 'meta.json').read_text())


def detectron2_channels(logits: np.ndarray) -> np.ndarray:
    """Our semantic channels (stuff 0..52, things 53) in detectron2's order
    (things 0, stuff 1..53)."""
    return np.concatenate([logits[-1:], logits[:-1]])


def detectron2_labels(labels: np.ndarray) -> np.ndarray:
    """Our semantic labels as detectron2's (things 0, stuff 1..53)."""
    return np.where(labels == NUM_STUFF, 0, labels + 1)


@functools.lru_cache(maxsize=None)
def panoptic_model():
    """Golden weights (sha256-checked) -> converter -> our model, with the
    golden run's instance confidence threshold."""
    module = make_weights_module()
    weights = module.build_state_dict(
        module.load_manifest(golden_dir() / VARIANT / 'manifest.json'))
    sha = module.state_dict_sha256(weights)
    meta = golden_meta()
    assert sha == WEIGHTS_SHA256 == meta['state_dict_sha256'], (
        f'{VARIANT}: rebuilt golden weights have sha256 {sha}')
    cfg = Config.fromfile(str(REPO_ROOT / CONFIG))
    cfg.model.test_cfg.panoptic.score_thr = meta['instances_confidence_thresh']
    model = build_target_model(cfg)
    conversion = convert_centermask2(weights, cfg, target=model.state_dict())
    model.load_state_dict(conversion.state_dict, strict=True)
    model.eval()
    return model, conversion, weights


@functools.lru_cache(maxsize=None)
def panoptic_run(image: str) -> dict:
    """``model.predict`` on the recorded input, with the FPN maps, the
    stride-4 semantic logits, the semantic logits at the original size and
    the FCOS detections captured on the way."""
    model, _, _ = panoptic_model()
    data = load_npz(VARIANT, f'{image}_panoptic')
    inputs = torch.from_numpy(
        load_npz('v39', f'{image}_infer', ['input_tensor'])['input_tensor'])
    inputs = inputs[None]
    height, width = (int(v) for v in data['resized_hw'])
    ori_h, ori_w = (int(v) for v in data['orig_hw'])
    meta = image_meta(
        dict(
            resized_hw=data['resized_hw'],
            orig_hw=data['orig_hw'],
            scale_xy=(width / ori_w, height / ori_h)), inputs.shape[-2:])
    captured = {}

    def capture(name, method):

        def wrapper(*args, **kwargs):
            captured[name] = (args, method(*args, **kwargs))
            return captured[name][1]

        return wrapper

    semantic, roi_head = model.semantic_head, model.roi_head
    with torch.no_grad(), \
            mock.patch.object(model.neck, 'forward',
                              capture('fpn', model.neck.forward)), \
            mock.patch.object(semantic, 'forward',
                              capture('stride4', semantic.forward)), \
            mock.patch.object(semantic, 'predict',
                              capture('seg', semantic.predict)), \
            mock.patch.object(roi_head, 'predict',
                              capture('roi', roi_head.predict)):
        sample = model.predict(inputs, [DetDataSample(metainfo=meta)])[0]
    return dict(
        data=data,
        fpn=[t[0].numpy() for t in captured['fpn'][1]],
        stride4=detectron2_channels(
            captured['stride4'][1]['seg_preds'][0].numpy()),
        logits=detectron2_channels(captured['seg'][1][0].numpy()),
        detections=captured['roi'][0][1][0],
        instances=sample.pred_instances,
        panoptic=sample.pred_panoptic_seg.sem_seg[0].numpy())


# --------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------


def test_weights_convert_and_load_strictly():
    model, conversion, weights = panoptic_model()
    manifest = json.loads(
        (golden_dir() / VARIANT / 'manifest.json').read_text())
    assert conversion.num_converted == len(manifest) == 320
    assert conversion.per_part['semantic_head'] == 23
    assert conversion.per_part['fpn'] == 20  # P2-P5 lateral + output, P6, P7
    assert conversion.dropped == []
    assert all(k.endswith('num_batches_tracked') for k, _ in conversion.added)
    assert set(model.state_dict()) == set(conversion.state_dict)
    # detectron2's "things" row 0 is our last row, the stuff rows move up
    ours = conversion.state_dict['semantic_head.conv_logits.weight']
    golden = weights['sem_seg_head.predictor.weight']
    assert torch.equal(ours[-1], golden[0])
    assert torch.equal(ours[:-1], golden[1:])


# --------------------------------------------------------------------------
# features and semantic logits
# --------------------------------------------------------------------------


@pytest.mark.parametrize('image', IMAGES)
def test_fpn_channel_statistics(image):
    run, case = panoptic_run(image), f'{VARIANT}/{image}'
    data = run['data']
    for level, ours in zip(FPN_LEVELS, run['fpn']):
        prefix = f'fpn_p{level}'
        assert tuple(data[f'{prefix}__shape']) == ours.shape, (
            f'{case} FPN P{level}: shape {ours.shape} vs golden '
            f'{tuple(data[prefix + "__shape"])}')
        flat = ours.reshape(ours.shape[0], -1).astype(np.float64)
        scale = max(
            np.abs(data[f'{prefix}__ch_min']).max(),
            np.abs(data[f'{prefix}__ch_max']).max())
        # this golden set's ch_std is torch's default, the unbiased std
        for stat, value in (('mean', flat.mean(1)), ('std',
                                                     flat.std(1, ddof=1)),
                            ('min', flat.min(1)), ('max', flat.max(1))):
            assert_close(
                case,
                f'FPN P{level} ch_{stat}',
                value,
                data[f'{prefix}__ch_{stat}'],
                atol=FEATURE_RTOL * scale)


@pytest.mark.parametrize('image', IMAGES)
def test_fpn_maps(image):
    """Full golden set: 4 whole channels of every FPN level."""
    run, case = panoptic_run(image), f'{VARIANT}/{image}'
    keys = [
        f'fpn_p{level}__{k}' for level in FPN_LEVELS
        for k in ('subset', 'channels')
    ]
    data = load_npz(VARIANT, f'{image}_panoptic', keys)
    for level, ours in zip(FPN_LEVELS, run['fpn']):
        channels = data[f'fpn_p{level}__channels']
        assert_close(case, f'FPN P{level} channels {channels.tolist()}',
                     ours[channels], data[f'fpn_p{level}__subset'],
                     FEATURE_RTOL)


@pytest.mark.parametrize('image', IMAGES)
def test_semantic_logits_stride4(image):
    """Every 4th row and column (compact set) of the stride-4 logits."""
    run, case = panoptic_run(image), f'{VARIANT}/{image}'
    golden = run['data']['sem_seg_stride4_logits__every4']
    assert_close(case, 'semantic logits stride 4 (every 4th px)',
                 run['stride4'][:, ::LOGITS_STEP, ::LOGITS_STEP], golden,
                 FEATURE_RTOL)


@pytest.mark.parametrize('image', IMAGES)
def test_semantic_logits_full(image):
    """Full golden set: all stride-4 logits and the logits at the original
    size (every 4th row and column)."""
    run, case = panoptic_run(image), f'{VARIANT}/{image}'
    data = load_npz(VARIANT, f'{image}_panoptic',
                    ['sem_seg_stride4_logits', 'sem_seg_logits_every4'])
    assert_close(case, 'semantic logits stride 4', run['stride4'],
                 data['sem_seg_stride4_logits'], FEATURE_RTOL)
    assert_close(case, 'semantic logits, original size (every 4th px)',
                 run['logits'][:, ::4, ::4], data['sem_seg_logits_every4'],
                 FEATURE_RTOL)


@pytest.mark.parametrize('image', IMAGES)
def test_semantic_argmax(image):
    run, case = panoptic_run(image), f'{VARIANT}/{image}'
    ours = run['logits'].argmax(0)
    golden = run['data']['sem_seg_argmax']
    assert ours.shape == golden.shape
    equal = float((ours == golden).mean())
    record(case, 'semantic argmax equal pixels (fraction)', equal)
    assert equal >= MIN_EQUAL_PIXELS, (
        f'{case} semantic argmax: {equal:.5f} of the pixels equal '
        f'(< {MIN_EQUAL_PIXELS}); first differing pixel '
        f'{tuple(np.argwhere(ours != golden)[0])}')


# --------------------------------------------------------------------------
# instances
# --------------------------------------------------------------------------


def to_original_frame(boxes: np.ndarray, data: Dict[str, np.ndarray]):
    """Boxes of the network input (n, 4) scaled to the original image and
    clipped to it, as detectron2's ``detector_postprocess``."""
    (height, width), (ori_h, ori_w) = data['resized_hw'], data['orig_hw']
    scale = np.array([ori_w / width, ori_h / height] * 2)
    return np.clip(boxes.astype(np.float64) * scale, 0, [ori_w, ori_h] * 2)


@pytest.mark.parametrize('image', IMAGES)
def test_proposals(image):
    """The FCOS detections. This golden set's ``proposal_boxes`` are in the
    original frame, clipped (equal to ``final_boxes``, although its README
    says network-input pixels: detectron2's ``detector_postprocess`` scales
    and clips the boxes in place), so ours are mapped the same way first."""
    run, case = panoptic_run(image), f'{VARIANT}/{image}'
    data, dets = run['data'], run['detections']
    boxes = to_original_frame(dets.bboxes.numpy(), data)
    index = match_detections(case, 'proposals', boxes, dets.labels.numpy(),
                             data['proposal_boxes'], data['proposal_classes'])
    assert_same_order(case, 'proposals', index, data['proposal_scores'])
    assert_equal(case, 'proposal classes',
                 dets.labels.numpy()[index], data['proposal_classes'])
    assert_boxes_close(case, 'proposal boxes (original frame, clipped)',
                       boxes[index], data['proposal_boxes'], PROPOSAL_BOX_ATOL,
                       PROPOSAL_BOX_RTOL)
    assert_close(
        case,
        'proposal scores',
        dets.scores.numpy()[index],
        data['proposal_scores'],
        atol=PROPOSAL_SCORE_ATOL)


@pytest.mark.parametrize('image', IMAGES)
def test_final_instances(image):
    run = panoptic_run(image)
    check_final_instances(f'{VARIANT}/{image}', run['instances'], run['data'])


# --------------------------------------------------------------------------
# panoptic map
# --------------------------------------------------------------------------


def detectron2_segments(panoptic: np.ndarray) -> Tuple[np.ndarray, List]:
    """Our panoptic map (MMDetection format) as detectron2's: an id map
    (0 = unlabeled) and ``(id, isthing, category_id, area)`` per segment,
    things by increasing instance id, then stuff by label."""
    ids = np.zeros(panoptic.shape, np.int32)
    segments = []
    void = NUM_THINGS + NUM_STUFF
    values = sorted(
        np.unique(panoptic[panoptic != void]),
        key=lambda v: (v < INSTANCE_OFFSET, v))
    for value in values:
        mask = panoptic == value
        isthing = bool(value >= INSTANCE_OFFSET)
        category = int(value %
                       INSTANCE_OFFSET) if isthing else int(value -
                                                            NUM_THINGS + 1)
        ids[mask] = len(segments) + 1
        segments.append(
            (len(segments) + 1, isthing, category, int(mask.sum())))
    return ids, segments


def match_segments(case: str, ours: np.ndarray, ours_segments: List,
                   golden: np.ndarray, golden_segments: List[Dict]) -> dict:
    """Golden segment id -> our segment id: same category and kind, the
    largest overlap. Every segment of each side must be matched."""
    golden_summary = [(s['id'], s['isthing'], s['category_id'], s['area'])
                      for s in golden_segments]
    assert len(ours_segments) == len(golden_segments), (
        f'{case} panoptic: {len(ours_segments)} segments, golden '
        f'{len(golden_segments)}: (id, isthing, category, area) ours '
        f'{ours_segments}, golden {golden_summary}')
    matches = {}
    for segment in golden_segments:
        candidates = [
            s[0] for s in ours_segments
            if (s[1], s[2]) == (segment['isthing'], segment['category_id'])
            and s[0] not in matches.values()
        ]
        assert candidates, (
            f'{case} panoptic: golden segment {segment} has no segment of '
            'the same category and kind in ours')
        inside = ours[golden == segment['id']]
        matches[segment['id']] = max(
            candidates, key=lambda i: int((inside == i).sum()))
    return matches


@pytest.mark.parametrize('image', IMAGES)
def test_panoptic_segments(image):
    run, case = panoptic_run(image), f'{VARIANT}/{image}'
    golden = run['data']['panoptic_seg']
    golden_segments = golden_meta()['images'][image]['segments_info']
    ours, ours_segments = detectron2_segments(run['panoptic'])
    assert ours.shape == golden.shape
    matches = match_segments(case, ours, ours_segments, golden,
                             golden_segments)
    areas = {s[0]: s[3] for s in ours_segments}
    for segment in golden_segments:
        area = areas[matches[segment['id']]]
        error = abs(area - segment['area']) / segment['area']
        record(case, 'panoptic segment area (rel)', error)
        assert error <= SEGMENT_AREA_RTOL, (
            f'{case} panoptic segment {segment}: our area {area} differs by '
            f'{error:.2%} (> {SEGMENT_AREA_RTOL:.1%})')
    renumbered = np.zeros_like(golden)
    for golden_id, ours_id in matches.items():
        renumbered[ours == ours_id] = golden_id
    equal = float((renumbered == golden).mean())
    record(case, 'panoptic equal pixels (fraction)', equal)
    assert equal >= MIN_EQUAL_PIXELS, (
        f'{case} panoptic map: {equal:.5f} of the pixels equal '
        f'(< {MIN_EQUAL_PIXELS})')
    unlabeled = int((ours == 0).sum())
    assert abs(unlabeled - golden_meta()['images'][image]['unlabeled_pixels']
               ) <= (1 - MIN_EQUAL_PIXELS) * ours.size
