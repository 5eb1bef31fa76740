"""The centermask2 mask-branch key table against the golden weights (the
real centermask2 names) and our RoI head."""
import pytest
from golden_utils import convert_part, golden_state_dict
from mmdet.registry import MODELS
from mmengine.config import ConfigDict
from roi_head_cfg import centermask_roi_head_cfg

from mmcentermask.converters.engine import Part
from mmcentermask.converters.key_tables.mask_branch import \
    centermask2_mask_branch_key_to_mmdet

VARIANT = 'lite_v19_slim_dw'
C2_PREFIX = 'roi_heads.'
MASK_BRANCH_PART = Part('mask_branch', C2_PREFIX, 'roi_head.',
                        centermask2_mask_branch_key_to_mmdet)


def lite_roi_head():
    """CenterMask-Lite mask branch (128 channels, 2 + 2 convs)."""
    return MODELS.build(
        centermask_roi_head_cfg(
            128, 80, fc_out_channels=1024,
            test_cfg=ConfigDict(mask_thr_binary=0.5)))


def test_converter_maps_every_mask_branch_key():
    state_dict = golden_state_dict(VARIANT, prefix=C2_PREFIX)
    converted = convert_part(state_dict, MASK_BRANCH_PART)
    assert len(converted) == len(state_dict) == 19
    head = lite_roi_head()
    ours = {f'roi_head.{k}': v.shape for k, v in head.state_dict().items()}
    assert {k: v.shape for k, v in converted.items()} == ours


def test_converter_single_keys_and_unknown_keys():
    assert centermask2_mask_branch_key_to_mmdet(
        'mask_head.spatialAtt.conv.weight') == \
        'mask_head.spatial_attention.conv.weight'
    assert centermask2_mask_branch_key_to_mmdet('maskiou_head.maskiou_fc2.bias') == \
        'mask_iou_head.fcs.1.bias'
    with pytest.raises(KeyError, match='mask_head.extra'):
        centermask2_mask_branch_key_to_mmdet('mask_head.extra.weight')
