# VoVNetV2-39 (eSE, identity) under MMDetection's own FCOS with the head
# improvements CenterMask's FCOS uses too (center sampling, normalised boxes,
# centerness on the regression branch, GIoU). As in CenterMask, stage3-5
# (strides 8-32) feed the FPN, whose P6/P7 come from P5. The backbone of the
# family (configs/_base_/models/vovnet-v2-39_frozen-bn.py); the FCOS base
# already feeds caffe-style BGR input with std 1.
_base_ = [
    'mmdet::fcos/'
    'fcos_r50-caffe_fpn_gn-head-center-normbbox-centeronreg-giou_1x_coco.py',
    '../_base_/plugins/mmcentermask.py',
    '../_base_/models/vovnet-v2-39_frozen-bn.py'
]
# crash-safe checkpoints; the plugin base adds the imports and the other hooks
default_hooks = dict(checkpoint=dict(type='CrashSafeCheckpointHook'))

model = dict(
    backbone=dict(
        _base_.vovnet_v2_39_backbone, _delete_=True, out_indices=(1, 2, 3)),
    neck=dict(in_channels=[512, 768, 1024], start_level=0))
