"""The whole mask branch against centermask2 on golden FPN features, and the
centermask2 -> mmcentermask key mapping."""
import numpy as np
import pytest
import torch
from golden_utils import golden_state_dict, load_npz
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import bbox2roi
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from roi_head_cfg import centermask_roi_head_cfg

from mmcentermask.converters.mask_branch import (convert_mask_branch,
                                                 convert_mask_branch_key)

VARIANT = 'lite_v19_slim_dw'  # the only variant with full FPN maps
C2_PREFIX = 'roi_heads.'


def lite_roi_head(clip_boxes=True):
    """CenterMask-Lite mask branch (128 channels, 2 + 2 convs)."""
    return MODELS.build(
        centermask_roi_head_cfg(
            128, 80, fc_out_channels=1024,
            test_cfg=ConfigDict(mask_thr_binary=0.5), clip_boxes=clip_boxes))


def assert_rel_close(actual, expected, rel, name):
    """max |actual - expected| <= rel * max |expected|."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, name
    err = np.abs(actual - expected).max()
    scale = np.abs(expected).max()
    assert err <= rel * scale, f'{name}: max abs err {err} > {rel} * {scale}'


def test_converter_maps_every_mask_branch_key():
    state_dict = golden_state_dict(VARIANT, prefix=C2_PREFIX)
    converted = convert_mask_branch(state_dict, dst_prefix='roi_head.')
    assert len(converted) == len(state_dict) == 19
    head = lite_roi_head()
    ours = {f'roi_head.{k}': v.shape for k, v in head.state_dict().items()}
    assert {k: v.shape for k, v in converted.items()} == ours


def test_converter_single_keys_and_unknown_keys():
    assert convert_mask_branch_key(
        'roi_heads.mask_head.spatialAtt.conv.weight', dst_prefix='') == \
        'mask_head.spatial_attention.conv.weight'
    assert convert_mask_branch_key(
        'roi_heads.maskiou_head.maskiou_fc2.bias') == \
        'roi_head.mask_iou_head.fcs.1.bias'
    assert convert_mask_branch_key('proposal_generator.x.weight') is None
    with pytest.raises(KeyError, match='mask_head.extra'):
        convert_mask_branch({'roi_heads.mask_head.extra.weight': None})


@pytest.fixture(scope='module')
def golden_run():
    """Lite mask branch with the golden weights on golden coffee P3-P7."""
    data = load_npz(VARIANT, 'coffee_infer')
    head = lite_roi_head()
    head.load_state_dict(
        convert_mask_branch(
            golden_state_dict(VARIANT, prefix=C2_PREFIX), dst_prefix=''),
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
        mask_results = head._mask_forward(x, rois, [sample.metainfo])
        mask_iou = head._mask_iou_forward(mask_results, dets.labels)
    feats = mask_results['mask_feats'].numpy()
    logits = mask_results['mask_preds'].numpy()
    assert_rel_close(feats[:, :16], data['roi_feats_first16ch'], 1e-4,
                     'roi_feats_first16ch')
    assert_rel_close(
        feats.mean((2, 3)), data['roi_feats__ch_mean'], 1e-4,
        'roi_feats__ch_mean')
    assert_rel_close(logits[np.arange(len(logits)),
                            dets.labels.numpy()],
                     data['mask_logits_pred_class'], 1e-4,
                     'mask_logits_pred_class')
    assert_rel_close(logits[:4], data['mask_logits_all_first4'], 1e-4,
                     'mask_logits_all_first4')
    assert_rel_close(mask_iou.numpy(), data['maskiou_pred'], 1e-4,
                     'maskiou_pred')


def mask_ious(masks, data):
    ori_w = int(data['orig_hw'][1])
    expected = np.unpackbits(
        data['final_masks_packed'], axis=-1)[..., :ori_w].astype(bool)
    assert masks.shape == expected.shape
    inter = (masks & expected).sum((1, 2))
    union = (masks | expected).sum((1, 2))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.)


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
    assert mask_ious(results.masks.numpy(), data).min() >= 0.99


def test_golden_masks_need_clipped_pasting(golden_run):
    """mmdet's pasting into the unclipped box misses centermask2's masks of
    the detections crossing the image border."""
    head, x, sample, dets, data = golden_run
    mmdet_head = lite_roi_head(clip_boxes=False)
    mmdet_head.load_state_dict(head.state_dict())
    mmdet_head.eval()
    with torch.no_grad():
        results = mmdet_head.predict(x, [dets], [sample], rescale=True)[0]
    assert mask_ious(results.masks.numpy(), data).min() < 0.9
