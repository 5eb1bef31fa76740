# centermask2 `centermask_lite_Mv2_FPN_ms_4x`: MobileNetV2 (width 1.0), FrozenBN, res3-res5.
_base_ = './centermask-lite_vovnet-v2-39_fpn_ms-4x_coco.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='MobileNetV2',
        out_indices=(2, 4, 6),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        init_cfg=None),
    neck=dict(in_channels=[32, 96, 320]))
# mmdet's MobileNetV2 always runs its final 1x1 conv (conv2, 320 -> 1280), whose output is not
# used: without this, DDP stops at the second iteration waiting for its gradient.
find_unused_parameters = True
