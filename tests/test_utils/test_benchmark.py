"""Benchmark building blocks, and the counted properties of the inference
path: one post-backbone pass of CenterMask-Lite dispatches no more ATen ops
than MMDetection's Mask R-CNN with the same backbone and the same number of
final masks (50; both at score threshold 0, Mask R-CNN's box head with every
class of its 1000 proposals), in both NMS modes; the controlled comparison
gives both detectors' class-aware NMS the same candidates and classes and
both paste the same number of masks; the timed stages give what
``test_step`` gives. ``run_in_checkout`` (the comparisons of two versions)
imports the checkout it is given."""
import os.path as osp

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.config import Config

from mmcentermask.models.dense_heads import centermask_fcos_head
from mmcentermask.utils.benchmark import (
    STAGES, anchor_sized_boxes, class_aware_nms_input, count_aten_ops,
    heads_pass, inference_stages, make_data, mask_rcnn_model_cfg,
    match_box_head_candidates, probe_inference, recorded_nms_inputs,
    run_in_checkout, set_post_processing, time_stages)

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
LITE = osp.join(REPO_ROOT, 'configs', 'centermask',
                'centermask-lite_vovnet-v2-19-slim-dw_fpn_ms-4x_coco.py')
#: the stride-4 mask level: FCOS and mask branch read different levels
LITE_P2 = osp.join(REPO_ROOT, 'configs', 'centermask',
                   'centermask-lite_vovnet-v2-39_fpn_mask-p2_ms-4x_coco.py')
SIZE = (256, 320)
MASKS = 50


def build(model_cfg, centermask: bool):
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    model.init_weights()
    if centermask:
        anchor_sized_boxes(model)
    return model.eval()


def build_centermask(config: str = LITE):
    cfg = Config.fromfile(config)
    set_post_processing(cfg.model, 0., MASKS)
    return build(cfg.model, True)


def build_mask_rcnn():
    model_cfg = mask_rcnn_model_cfg(Config.fromfile(LITE))
    set_post_processing(model_cfg, 0., MASKS)
    return build(model_cfg, False)


@pytest.fixture(scope='module', autouse=True)
def registered():
    register_all_modules()


@pytest.fixture(scope='module')
def centermask():
    return build_centermask()


@pytest.fixture(scope='module')
def mask_rcnn_ops():
    run = heads_pass(build_mask_rcnn(), make_data(SIZE))
    assert len(run()[0].pred_instances.masks) == MASKS
    return count_aten_ops(run)[0]


@pytest.mark.parametrize('nms_mode', ['auto', 'batched'])
def test_centermask_dispatches_fewer_ops_than_mask_rcnn(
        mask_rcnn_ops, nms_mode):
    cfg = Config.fromfile(LITE)
    set_post_processing(cfg.model, 0., MASKS)
    cfg.model.test_cfg.fcos.nms_mode = nms_mode
    run = heads_pass(build(cfg.model, True), make_data(SIZE))
    assert len(run()[0].pred_instances.masks) == MASKS
    ops, per_name = count_aten_ops(run)
    assert ops <= mask_rcnn_ops, (
        f'{ops} ATen ops > Mask R-CNN {mask_rcnn_ops}; most: '
        f'{sorted(per_name.items(), key=lambda kv: -kv[1])[:8]}')


def test_count_aten_ops_counts_top_level_calls():
    x = torch.ones(3)
    total, per_name = count_aten_ops(lambda: (x + 1).sum())
    assert per_name == {'aten::add': 1, 'aten::sum': 1} and total == 2


def test_mask_rcnn_gets_the_centermask_backbone():
    cfg = Config.fromfile(LITE)
    model_cfg = mask_rcnn_model_cfg(cfg)
    assert model_cfg.backbone.type == cfg.model.backbone.type == 'VoVNet'
    assert tuple(model_cfg.backbone.out_indices) == (0, 1, 2, 3)
    assert model_cfg.roi_head.mask_head.num_classes == cfg.model.num_classes


def test_make_data_is_deterministic():
    a, b = make_data((8, 9)), make_data((8, 9))
    assert torch.equal(a['inputs'][0], b['inputs'][0])
    assert a['data_samples'][0].ori_shape == (8, 9)


def assert_same_results(results, expected):
    for key in ('bboxes', 'scores', 'labels', 'masks'):
        assert torch.equal(results[0].pred_instances[key],
                           expected[0].pred_instances[key]), key


@pytest.mark.parametrize('detector', ['CenterMask', 'Mask R-CNN'])
def test_stages_give_what_test_step_gives(centermask, detector):
    model = centermask if detector == 'CenterMask' else build_mask_rcnn()
    stages = inference_stages(model)
    assert [name for name, _ in stages] == list(STAGES)
    with torch.no_grad():
        expected = model.test_step(make_data(SIZE))
    times, results = time_stages(stages, make_data(SIZE), cuda=False)
    assert len(times) == len(STAGES) and min(times) > 0
    assert_same_results(results, expected)


def test_stages_of_the_stride_4_mask_level_give_what_test_step_gives():
    model = build_centermask(LITE_P2)
    assert model.num_mask_only_levels == 1
    with torch.no_grad():
        expected = model.test_step(make_data(SIZE))
    _, results = time_stages(inference_stages(model), make_data(SIZE), False)
    assert len(expected[0].pred_instances) == MASKS
    assert_same_results(results, expected)


def test_controlled_candidates_and_masks_are_the_same(centermask):
    """Mask R-CNN matched to CenterMask: its box-head NMS receives exactly
    the candidates count and the classes of CenterMask's FCOS NMS, and both
    paste the same number of masks."""
    data = make_data(SIZE)
    calls, results = probe_inference(centermask, data)
    fcos = class_aware_nms_input(centermask, calls)
    assert [call.nms for call in calls] == ['FCOS']
    assert len(results[0].pred_instances.masks) == MASKS

    mask_rcnn = build_mask_rcnn()
    threshold = match_box_head_candidates(mask_rcnn, data, fcos.groups,
                                          fcos.boxes)
    assert mask_rcnn.roi_head.test_cfg.score_thr == threshold > 0
    calls, results = probe_inference(mask_rcnn, data)
    assert [call.nms for call in calls] == ['RPN', 'box head']
    box_head = class_aware_nms_input(mask_rcnn, calls)
    assert (box_head.boxes, box_head.groups) == (fcos.boxes, fcos.groups)
    assert len(results[0].pred_instances.masks) == MASKS


def test_match_box_head_candidates_keeps_a_subset_of_classes():
    data = make_data(SIZE)
    mask_rcnn = build_mask_rcnn()
    classes = (3, 17, 42)
    match_box_head_candidates(mask_rcnn, data, classes, 100)
    box_head = class_aware_nms_input(mask_rcnn,
                                     probe_inference(mask_rcnn, data)[0])
    assert (box_head.boxes, box_head.groups) == (100, classes)


def test_match_box_head_candidates_needs_enough_proposals():
    mask_rcnn = build_mask_rcnn()
    with pytest.raises(ValueError, match='proposals x 1 classes'):
        match_box_head_candidates(mask_rcnn, make_data(SIZE), [0], 10**6)


def test_recorded_nms_inputs_restores_the_nms_functions():
    original = centermask_fcos_head.class_aware_nms
    with recorded_nms_inputs() as calls:
        assert centermask_fcos_head.class_aware_nms is not original
        boxes = torch.tensor([[0., 0., 4., 4.], [0., 0., 4., 5.],
                              [9., 9., 12., 12.]])
        centermask_fcos_head.class_aware_nms(
            boxes, torch.tensor([.9, .8, .7]), torch.tensor([2, 2, 5]),
            dict(type='nms', iou_threshold=0.5))
    assert centermask_fcos_head.class_aware_nms is original
    assert calls == [('FCOS', 3, (2, 5))]


def test_run_in_checkout_imports_that_checkout(tmp_path):
    checkout = tmp_path / 'checkout'
    (checkout / 'mmcentermask').mkdir(parents=True)
    (checkout / 'mmcentermask' /
     '__init__.py').write_text("ORIGIN = 'stand-in'\n")
    code = ('import json, os, mmcentermask; print("log line"); '
            'print(json.dumps(dict(origin=mmcentermask.ORIGIN, '
            'cwd=os.getcwd())))')
    assert run_in_checkout(str(checkout), ['-c', code]) == dict(
        origin='stand-in', cwd=str(checkout))
    assert run_in_checkout(
        str(checkout), ['-c', code], cwd=str(tmp_path))['cwd'] == str(tmp_path)


def test_run_in_checkout_reports_the_failure(tmp_path):
    with pytest.raises(RuntimeError, match='ZeroDivisionError'):
        run_in_checkout(str(tmp_path), ['-c', '1 / 0'])
