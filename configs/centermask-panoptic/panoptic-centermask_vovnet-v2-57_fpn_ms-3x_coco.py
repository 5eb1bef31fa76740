# Panoptic-CenterMask V2-57 (centermask2 `panoptic_centermask_V_57_eSE_FPN_ms_3x.yaml`).
_base_ = './panoptic-centermask_vovnet-v2-39_fpn_ms-3x_coco.py'
model = dict(backbone=dict(arch='V-57'))
