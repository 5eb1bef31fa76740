"""The heads against centermask2 in isolation in training mode, each fed
the golden inputs of its stage: FCOS targets from the golden GT, RoI levels
of the golden foreground RoIs, mask and MaskIoU targets and losses from the
golden foreground RoIs and mask logits."""
import json
import math

import numpy as np
import pytest
import torch
from detector_utils import make_sampling_result
from fidelity_utils import LEVELS, NUM_CLASSES, TARGET_ATOL
from fidelity_utils import two_threads  # noqa: F401 (autouse fixture)
from golden_utils import TRAIN_RUNS, VARIANTS, golden_dir, load_npz
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox_overlaps
from mmdet.structures.mask import PolygonMasks
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from mmcentermask.models import (AdaptiveLevelRoIExtractor, CenterMaskIoUHead,
                                 SAGMaskHead)

TRAIN_CFG = ConfigDict(mask_size=28, mask_thr_binary=0.)


@pytest.mark.parametrize('variant', VARIANTS)
@pytest.mark.parametrize('run', TRAIN_RUNS)
def test_fcos_targets_of_golden_gt(variant, run):
    data = load_npz(variant, run)
    num_imgs, _, pad_h, pad_w = (int(v) for v in data['input_tensor_shape'])
    sizes = [(math.ceil(pad_h / 8), math.ceil(pad_w / 8))]
    for _ in LEVELS[1:]:
        sizes.append(tuple(math.ceil(v / 2) for v in sizes[-1]))
    head = MODELS.build(
        dict(
            type='CenterMaskFCOSHead',
            num_classes=NUM_CLASSES,
            in_channels=32,
            feat_channels=32,
            stacked_convs=1))
    points = head.prior_generator.grid_priors(sizes, device='cpu')
    gt_instances = [
        InstanceData(
            bboxes=torch.from_numpy(data[f'gt_boxes_img{i}']),
            labels=torch.from_numpy(data[f'gt_classes_img{i}']).long())
        for i in range(num_imgs)
    ]
    labels, bbox_targets = head.get_targets(points, gt_instances)
    num_pos = 0
    for lvl, level in enumerate(LEVELS):
        golden_labels = data[f'fcos_labels_p{level}']
        assert golden_labels.shape[1:] == sizes[lvl]
        ours = labels[lvl].reshape(golden_labels.shape).numpy()
        np.testing.assert_array_equal(ours, golden_labels, f'P{level}')
        pos = golden_labels != NUM_CLASSES
        num_pos += int(pos.sum())
        targets = bbox_targets[lvl].reshape(*golden_labels.shape, 4)
        pos_targets = targets[torch.from_numpy(pos)]
        np.testing.assert_allclose(
            pos_targets.numpy(),
            data[f'fcos_reg_targets_p{level}'][pos],
            rtol=0,
            atol=TARGET_ATOL)
        np.testing.assert_allclose(
            head.centerness_target(pos_targets).numpy(),
            data[f'fcos_ctr_targets_p{level}'][pos],
            rtol=0,
            atol=TARGET_ATOL)
    assert num_pos == int(data['fcos_num_pos']) > 0


@pytest.mark.parametrize('variant', VARIANTS)
@pytest.mark.parametrize('run', TRAIN_RUNS)
def test_roi_levels_of_golden_foreground_rois(variant, run):
    """centermask2 levels of the foreground training RoIs; in
    ``train_batch2`` the two images have different sizes."""
    data = load_npz(variant, run)
    num_imgs = 2 if run == 'train_batch2' else 1
    metas = [
        dict(img_shape=tuple(data[f'resized_hw_img{i}'].tolist()))
        for i in range(num_imgs)
    ]
    rois = torch.cat([
        torch.from_numpy(data['mask_fg_img_index'])[:, None].float(),
        torch.from_numpy(data['mask_fg_boxes'])
    ],
                     dim=1)
    extractor = AdaptiveLevelRoIExtractor(
        roi_layer=dict(
            type='RoIAlign', output_size=14, sampling_ratio=0, aligned=True),
        out_channels=4,
        featmap_strides=[8, 16, 32])
    feats = [torch.zeros(num_imgs, 4, 1, 1)] * 3
    levels = extractor.map_roi_levels(
        rois, extractor.roi_image_areas(feats, rois, metas)) + 3
    np.testing.assert_array_equal(levels.numpy(), data['mask_fg_levels'])


def golden_positives(variant, run):
    """Sampling results, GT (polygons resized as detectron2 does) and
    arrays of a golden training file."""
    data = load_npz(variant, run)
    annotations = json.loads(
        (golden_dir() / 'images' / 'annotations.json').read_text())
    image_ids = {
        'train_coffee': [1],
        'train_moto_crop': [2],
        'train_batch2': [1, 2]
    }[run]
    sampling_results, gts = [], []
    for i, image_id in enumerate(image_ids):
        image = next(im for im in annotations['images']
                     if im['id'] == image_id)
        new_h, new_w = data[f'resized_hw_img{i}'].tolist()
        scale = np.array([new_w / image['width'], new_h / image['height']])
        polygons = [[
            np.asarray(p, dtype=np.float64) * np.tile(scale,
                                                      len(p) // 2)
            for p in ann['segmentation']
        ] for ann in annotations['annotations'] if ann['image_id'] == image_id]
        gt_boxes = torch.from_numpy(data[f'gt_boxes_img{i}'])
        gt_labels = torch.from_numpy(data[f'gt_classes_img{i}']).long()
        boxes = torch.from_numpy(
            data['mask_fg_boxes'][data['mask_fg_img_index'] == i])
        gt_inds = bbox_overlaps(boxes, gt_boxes).argmax(1)
        sampling_results.append(
            make_sampling_result(boxes, gt_boxes, gt_inds, gt_labels))
        gts.append(InstanceData(masks=PolygonMasks(polygons, new_h, new_w)))
    return sampling_results, gts, data


@pytest.mark.parametrize('variant', VARIANTS)
@pytest.mark.parametrize('run', TRAIN_RUNS)
def test_mask_targets_and_losses_of_golden_rois(variant, run):
    """From centermask2's foreground RoIs and GT-class mask logits: mask
    targets (exact), MaskIoU targets, loss_mask and loss_maskiou."""
    sampling_results, gts, data = golden_positives(variant, run)
    labels = torch.cat([res.pos_gt_labels for res in sampling_results])
    np.testing.assert_array_equal(labels.numpy(), data['mask_fg_gt_classes'])

    mask_head = SAGMaskHead(
        num_convs=0, in_channels=4, conv_out_channels=4, num_classes=80)
    iou_head = CenterMaskIoUHead(
        num_convs=1,
        num_fcs=1,
        in_channels=4,
        conv_out_channels=4,
        fc_out_channels=4)
    mask_targets = mask_head.get_targets(sampling_results, gts, TRAIN_CFG)
    expected = np.unpackbits(
        data['mask_fg_targets_packed'], axis=-1)[..., :28].astype(bool)
    np.testing.assert_array_equal(mask_targets.bool().numpy(), expected)

    logits = torch.from_numpy(data['mask_fg_logits_gt_class'])
    iou_targets = iou_head.get_targets(sampling_results, gts, logits,
                                       mask_targets, TRAIN_CFG)
    np.testing.assert_allclose(
        iou_targets.numpy(), data['maskiou_targets'], rtol=0, atol=1e-7)

    all_logits = torch.zeros(len(labels), 80, 28, 28)
    all_logits[torch.arange(len(labels)), labels] = logits
    loss_mask = mask_head.loss_mask(all_logits, mask_targets, labels)
    loss_iou = iou_head.loss_and_target(
        torch.from_numpy(data['maskiou_pred_gt_class']), logits, mask_targets,
        sampling_results, gts, TRAIN_CFG)['loss_mask_iou']
    assert loss_mask.item() == pytest.approx(
        float(data['loss__loss_mask']), rel=1e-6)
    assert loss_iou.item() == pytest.approx(
        float(data['loss__loss_maskiou']), rel=1e-6)
