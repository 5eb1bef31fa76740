# Panoptic-CenterMask R-50 (centermask2 `panoptic_centermask_R_50_FPN_ms_3x.yaml`): the V2-39
# panoptic config with CenterMask R-50's backbone (MSRA caffe ResNet-50, stem + res2 frozen),
# res2-res5 into the FPN (P2-P7); the 3x schedule (270k iterations, steps 210k and 250k).
_base_ = './panoptic-centermask_vovnet-v2-39_fpn_ms-3x_coco.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        style='caffe',
        init_cfg=None),
    neck=dict(in_channels=[256, 512, 1024, 2048]))
