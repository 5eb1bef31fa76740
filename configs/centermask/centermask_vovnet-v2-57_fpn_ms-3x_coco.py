_base_ = './centermask_vovnet-v2-39_fpn_ms-3x_coco.py'
model = dict(backbone=dict(arch='V-57'))
