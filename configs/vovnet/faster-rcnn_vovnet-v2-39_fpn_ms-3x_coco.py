# VoVNetV2-39 (eSE, identity) under MMDetection's own multi-scale 3x Faster
# R-CNN, as vovnet-detectron2 trains it (configs/_base_/models/vovnet-v2-39_frozen-bn.py:
# frozen BN, no stage frozen, stage2-5 into the FPN, caffe-style BGR input with std 1).
_base_ = [
    'mmdet::faster_rcnn/faster-rcnn_r50_fpn_ms-3x_coco.py',
    '../_base_/plugins/mmcentermask.py',
    '../_base_/models/vovnet-v2-39_frozen-bn.py'
]
# crash-safe checkpoints; the plugin base adds the imports and the other hooks
default_hooks = dict(checkpoint=dict(type='CrashSafeCheckpointHook'))

model = dict(
    data_preprocessor=_base_.caffe_bgr_data_preprocessor,
    backbone=dict(_base_.vovnet_v2_39_backbone, _delete_=True),
    neck=dict(in_channels=[256, 512, 768, 1024]))
