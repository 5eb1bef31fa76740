# MMDetection's Mask Scoring R-CNN R-50-FPN 1x with CenterMask's SAG-Mask head in place of
# FCNMaskHead, inside mmdet's stock MaskScoringRoIHead (whose MaskIoUHead rescores the box
# scores, as in MS R-CNN).
_base_ = [
    'mmdet::ms_rcnn/ms-rcnn_r50_fpn_1x_coco.py',
    '../_base_/plugins/mmcentermask.py'
]
# crash-safe checkpoints; the plugin base adds the imports and the other hooks
default_hooks = dict(checkpoint=dict(type='CrashSafeCheckpointHook'))

model = dict(
    # the base initialises the backbone from torchvision://resnet50 (a download); point this
    # at a local checkpoint, e.g. init_cfg=dict(type='Pretrained', checkpoint='resnet50.pth')
    backbone=dict(init_cfg=None),
    roi_head=dict(mask_head=dict(type='SAGMaskHead')))
