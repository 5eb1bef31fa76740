# MMDetection's Mask R-CNN R-50-FPN 1x with CenterMask's spatial-attention-guided mask head
# (SAG-Mask) in place of FCNMaskHead, inside mmdet's stock StandardRoIHead. Nothing else
# changes: RPN proposals, the shared-FC box head and the 14x14 mask RoIs are Mask R-CNN's.
_base_ = [
    'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
    '../_base_/plugins/mmcentermask.py'
]
# crash-safe checkpoints; the plugin base adds the imports and the other hooks
default_hooks = dict(checkpoint=dict(type='CrashSafeCheckpointHook'))

model = dict(
    # the base initialises the backbone from torchvision://resnet50 (a download); point this
    # at a local checkpoint, e.g. init_cfg=dict(type='Pretrained', checkpoint='resnet50.pth')
    backbone=dict(init_cfg=None),
    # SAGMaskHead takes every FCNMaskHead argument of the base (4 convs, 256 channels,
    # 80 classes, BCE mask loss) and adds the SAM between the convs and the deconv.
    roi_head=dict(mask_head=dict(type='SAGMaskHead')))
