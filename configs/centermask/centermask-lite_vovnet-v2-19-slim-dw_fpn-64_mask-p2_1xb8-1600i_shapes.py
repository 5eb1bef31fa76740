# The quick-start CenterMask-Lite with a stride-4 P2 level for the mask branch (ours, not an
# authors' config): small objects in small images pool from P2 as in Mask R-CNN, the FCOS head
# still reads P3-P7. tools/analysis_tools/benchmark_small_objects.py compares it with the
# quick start and with MMDetection's Mask R-CNN.
_base_ = './centermask-lite_vovnet-v2-19-slim-dw_fpn-64_1xb8-1600i_shapes.py'
model = dict(
    num_mask_only_levels=1,
    backbone=dict(out_indices=(0, 1, 2, 3)),  # stage2-stage5
    neck=dict(in_channels=[112, 256, 384, 512], num_outs=6),  # P2-P7
    roi_head=dict(mask_roi_extractor=dict(featmap_strides=[4, 8, 16, 32])))
