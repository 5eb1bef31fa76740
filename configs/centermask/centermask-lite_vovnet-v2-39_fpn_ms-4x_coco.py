# CenterMask-Lite V2-39 (centermask2 `centermask_lite_V_39_eSE_FPN_ms_4x`): the Lite base.
# 128-channel FPN and heads, 2 FCOS / mask / MaskIoU convs, short side 580/600 (max 1000),
# 360k iterations with steps at 300k and 340k.
_base_ = './centermask_vovnet-v2-39_fpn_ms-3x_coco.py'
fpn_channels = 128
model = dict(
    neck=dict(out_channels=fpn_channels),
    bbox_head=dict(
        in_channels=fpn_channels, feat_channels=fpn_channels,
        stacked_convs=2),
    roi_head=dict(
        mask_roi_extractor=dict(out_channels=fpn_channels),
        mask_head=dict(
            num_convs=2, in_channels=fpn_channels,
            conv_out_channels=fpn_channels),
        mask_iou_head=dict(
            num_convs=2, in_channels=fpn_channels,
            conv_out_channels=fpn_channels)))

train_pipeline = _base_.train_pipeline
train_pipeline[2].scales = [(1000, 580), (1000, 600)]  # RandomChoiceResize
test_pipeline = _base_.test_pipeline
test_pipeline[1].scale = (1000, 600)  # Resize
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

max_iters = 360000
train_cfg = dict(max_iters=max_iters)
_base_.param_scheduler[1].end = max_iters
_base_.param_scheduler[1].milestones = [300000, 340000]
