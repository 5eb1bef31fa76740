# VoVNetV2-39 (eSE, identity) under MMDetection's own FCOS with the head
# improvements CenterMask's FCOS uses too (center sampling, normalised boxes,
# centerness on the regression branch, GIoU). As in CenterMask, stage3-5
# (strides 8-32) feed the FPN, whose P6/P7 come from P5. Frozen BN, no stage
# frozen; the base already feeds caffe-style BGR input with std 1.
# init_cfg=None trains from random init; for ImageNet weights see README.md.
_base_ = [
    'mmdet::fcos/'
    'fcos_r50-caffe_fpn_gn-head-center-normbbox-centeronreg-giou_1x_coco.py',
    '../_base_/plugins/mmcentermask.py'
]
# crash-safe checkpoints; the plugin base adds the imports and the other hooks
default_hooks = dict(checkpoint=dict(type='CrashSafeCheckpointHook'))

model = dict(
    backbone=dict(
        _delete_=True,
        type='VoVNet',
        arch='V-39',
        out_indices=(1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        init_cfg=None),
    neck=dict(in_channels=[512, 768, 1024], start_level=0))
