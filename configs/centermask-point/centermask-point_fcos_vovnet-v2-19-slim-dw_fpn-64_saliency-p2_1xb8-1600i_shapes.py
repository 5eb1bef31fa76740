# The point-representation CenterMask-FCOS shapes config with its saliency (and so the mask
# assembly) on a stride-4 P2 level (ours, not the paper's): the backbone's stage2 joins the FPN,
# whose P2 only the saliency branch reads; FCOS and the shape branch still read P3-P7. For the
# small objects of the shapes set (8-60 px in 128-192 px images, 1-7 P3 pixels).
_base_ = './centermask-point_fcos_vovnet-v2-19-slim-dw_fpn-64_1xb8-1600i_shapes.py'

model = dict(
    backbone=dict(out_indices=(0, 1, 2, 3)),  # stage2-stage5
    neck=dict(in_channels=[112, 256, 384, 512], num_outs=6),  # P2-P7
    bbox_head=dict(num_saliency_only_levels=1))
