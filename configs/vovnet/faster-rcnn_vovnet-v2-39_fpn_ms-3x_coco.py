# VoVNetV2-39 (eSE, identity) under MMDetection's own multi-scale 3x Faster
# R-CNN. Backbone settings follow vovnet-detectron2: frozen BN, FREEZE_AT 0 (no
# stage frozen), stage2-5 into the FPN, caffe-style BGR input with std 1.
# init_cfg=None trains from random init; for ImageNet weights see README.md.
_base_ = [
    'mmdet::faster_rcnn/faster-rcnn_r50_fpn_ms-3x_coco.py',
    '../_base_/plugins/mmcentermask.py'
]
# crash-safe checkpoints; the plugin base adds the imports and the other hooks
default_hooks = dict(checkpoint=dict(type='CrashSafeCheckpointHook'))

model = dict(
    data_preprocessor=dict(
        mean=[103.53, 116.28, 123.675], std=[1.0, 1.0, 1.0], bgr_to_rgb=False),
    backbone=dict(
        _delete_=True,
        type='VoVNet',
        arch='V-39',
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        init_cfg=None),
    neck=dict(in_channels=[256, 512, 768, 1024]))
