# CenterMask-Lite V2-39 with a stride-4 P2 level for the mask branch (ours, not an authors'
# config); see centermask_vovnet-v2-39_fpn_mask-p2_ms-3x_coco.py.
_base_ = './centermask-lite_vovnet-v2-39_fpn_ms-4x_coco.py'
model = dict(
    num_mask_only_levels=1,
    backbone=dict(out_indices=(0, 1, 2, 3)),  # stage2-stage5
    neck=dict(in_channels=[256, 512, 768, 1024], num_outs=6),  # P2-P7
    roi_head=dict(mask_roi_extractor=dict(featmap_strides=[4, 8, 16, 32])))
