# Panoptic-CenterMask R-101 (centermask2 `panoptic_centermask_R_101_FPN_ms_3x.yaml`).
_base_ = './panoptic-centermask_r50-caffe_fpn_ms-3x_coco.py'
model = dict(backbone=dict(depth=101))
