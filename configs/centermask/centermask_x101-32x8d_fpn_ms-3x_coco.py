# centermask2 `centermask_X_101_32x8d_FPN_ms_3x`: FAIR ResNeXt-101 32x8d, BGR with std.
_base_ = './centermask_r50-caffe_fpn_ms-3x_coco.py'
model = dict(
    data_preprocessor=dict(std=[57.375, 57.120, 58.395]),
    backbone=dict(
        type='ResNeXt', depth=101, groups=32, base_width=8,
        style='pytorch'))
