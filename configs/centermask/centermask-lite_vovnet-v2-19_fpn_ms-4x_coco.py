_base_ = './centermask-lite_vovnet-v2-39_fpn_ms-4x_coco.py'
model = dict(backbone=dict(arch='V-19'))
