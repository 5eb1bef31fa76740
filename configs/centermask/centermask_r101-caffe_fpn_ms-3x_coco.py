_base_ = './centermask_r50-caffe_fpn_ms-3x_coco.py'
model = dict(backbone=dict(depth=101))
