# centermask2 `centermask_R_50_FPN_ms_3x`: MSRA caffe ResNet-50, stem + res2 frozen.
_base_ = './centermask_vovnet-v2-39_fpn_ms-3x_coco.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        style='caffe',
        init_cfg=None),
    neck=dict(in_channels=[512, 1024, 2048]))
