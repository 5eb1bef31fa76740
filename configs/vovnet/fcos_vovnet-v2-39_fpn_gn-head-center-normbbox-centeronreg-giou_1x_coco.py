# VoVNetV2-39 (eSE, identity) under MMDetection's own FCOS with the head
# improvements CenterMask's FCOS uses too (center sampling, normalised boxes,
# centerness on the regression branch, GIoU). As in CenterMask, stage3-5
# (strides 8-32) feed the FPN, whose P6/P7 come from P5. Frozen BN, no stage
# frozen, caffe-style BGR input with std 1.
# init_cfg=None trains from random init; for ImageNet weights see README.md.
_base_ = (
    'mmdet::fcos/'
    'fcos_r50-caffe_fpn_gn-head-center-normbbox-centeronreg-giou_1x_coco.py')

custom_imports = dict(imports=['mmcentermask'], allow_failed_imports=False)
# Crash-safe checkpoints and a stop on NaN/inf losses (mmcentermask/engine/hooks/).
default_hooks = dict(checkpoint=dict(type='CrashSafeCheckpointHook'))
custom_hooks = [
    dict(type='NonFiniteLossHook'),
    dict(type='ReuseCPUMemoryHook')
]

model = dict(
    data_preprocessor=dict(
        mean=[103.53, 116.28, 123.675], std=[1.0, 1.0, 1.0], bgr_to_rgb=False),
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
