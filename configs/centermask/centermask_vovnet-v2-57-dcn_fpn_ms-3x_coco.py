# DCNv2 in every 3x3 layer of the OSA modules of stages 3-5 (centermask2 `*_dcn_FPN_ms_3x`).
_base_ = './centermask_vovnet-v2-57_fpn_ms-3x_coco.py'
model = dict(
    backbone=dict(
        dcn=dict(type='DCNv2', deform_groups=1),
        stage_with_dcn=(False, True, True, True)))
