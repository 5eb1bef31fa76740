# Point-representation CenterMask with Hourglass-104 (mmdet's HourglassNet as
# in CornerNet/CenterNet: two stacks, each with its own five-branch head set;
# the loss is averaged over the stacks and the last stack predicts). The
# paper's main model: 34.5 mask AP at 12.3 fps on COCO test-dev (theirs,
# not reproduced here). "Totally trained from scratch": no init_cfg.
# CenterNet's Hourglass test padding: logical or with 127, plus one pixel.
_base_ = './centermask-point_r18_8xb16-crop512-130e_coco.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='HourglassNet',
        downsample_times=5,
        num_stacks=2,
        stage_channels=[256, 256, 384, 384, 384, 512],
        stage_blocks=[2, 2, 2, 2, 2, 4],
        norm_cfg=dict(type='BN', requires_grad=True)),
    neck=None,
    bbox_head=dict(in_channels=256, feat_channels=256, num_feat_levels=2))

test_pipeline = _base_.test_pipeline
test_pipeline[1].test_pad_mode = ['logical_or', 127]  # the crop / pad step
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
