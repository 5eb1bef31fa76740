"""Training mode against centermask2 on ``train_{coffee,moto_crop,batch2}``:
GT construction, FCOS targets, training proposals, foreground RoIs with
their mask / MaskIoU targets and predictions, the five losses."""
import numpy as np
import pytest
import torch
from fidelity_utils import (HEAD_RTOL, LEVELS, LOSS_MASKIOU_RTOL, LOSS_NAMES,
                            LOSS_RTOL, MASKIOU_TARGET_ATOL, NUM_CLASSES,
                            PROPOSAL_BOX_ATOL, PROPOSAL_BOX_RTOL,
                            PROPOSAL_SCORE_ATOL, TARGET_ATOL, TRAIN_PARAMS,
                            assert_boxes_close, assert_close, assert_equal,
                            assert_same_order, match_detections, record,
                            train_run)
from fidelity_utils import two_threads  # noqa: F401 (autouse fixture)


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
