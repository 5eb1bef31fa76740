# MMDetection's Mask R-CNN R-50-FPN 1x whose box and mask RoI extractors assign RoIs to
# P2-P5 with CenterMask's adaptive rule (Eq. 2, box area relative to the image area)
# instead of the FPN rule (Eq. 1, box size relative to 224 px).
#
# mmdet's StandardRoIHead calls the extractors as extractor(feats, rois), without image
# metas, so AdaptiveLevelRoIExtractor uses the padded batch size (the stride-4 map's size
# x 4) as the image area of every RoI. With one image per batch this differs from the real
# image area only by the padding to a multiple of 32; in a batch of differently sized images
# the smaller images are measured against the largest padded size, so their RoIs go to
# finer levels than CenterMask's rule gives them (see README.md).
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
    roi_head=dict(
        bbox_roi_extractor=dict(
            type='AdaptiveLevelRoIExtractor',
            level_rule='ratio',
            featmap_strides=[4, 8, 16, 32]),
        mask_roi_extractor=dict(
            type='AdaptiveLevelRoIExtractor',
            level_rule='ratio',
            featmap_strides=[4, 8, 16, 32])))
