# Point-representation CenterMask with DLA-34 and CenterNet's DLA up-path
# (DLAUp + IDAUp with DCNv2, 64 channels at stride 4) and 256-channel head
# branches. The paper reports 32.5 mask AP at 25.2 fps on COCO test-dev for
# this backbone (theirs, from summaries of the paper; not reproduced here).
# Random initialisation: no ImageNet DLA-34 weights are shipped; set
# backbone.init_cfg=dict(type='Pretrained', checkpoint=PATH) to use some.
_base_ = './centermask-point_r18_8xb16-crop512-130e_coco.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='DLA',
        arch='dla34',
        norm_cfg=dict(type='BN', requires_grad=True)),
    neck=dict(
        _delete_=True,
        type='DLAUpNeck',
        in_channels=[16, 32, 64, 128, 256, 512],
        first_level=2,
        use_dcn=True),
    bbox_head=dict(in_channels=64, feat_channels=256))
