# Panoptic-CenterMask X-101 (centermask2 `panoptic_centermask_X_101_FPN_ms_3x.yaml`; the authors
# released no weights): FAIR ResNeXt-101 32x8d, BGR with std.
_base_ = './panoptic-centermask_r50-caffe_fpn_ms-3x_coco.py'
model = dict(
    data_preprocessor=dict(std=[57.375, 57.120, 58.395]),
    backbone=dict(
        type='ResNeXt', depth=101, groups=32, base_width=8,
        style='pytorch'))
