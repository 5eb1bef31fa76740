# Point-representation CenterMask embedded into FCOS (the paper's
# "CenterMask-FCOS" experiment), trained from scratch on the CPU on the
# bundled shapes dataset (tools/dataset_converters/make_shapes_dataset.py,
# 3 classes): the same backbone, FPN, FCOS head, schedule and budget as the
# Lee & Park quick start
# (configs/centermask/centermask-lite_vovnet-v2-19-slim-dw_fpn-64_1xb8-1600i_shapes.py),
# with point CenterMask's Shape and Saliency branches (64 channels) in place
# of the RoI mask branch. The data pipeline is the CenterNet shapes config's
# (short side 128-160, test 160). Why this member of the family for the
# CPU budget: the CenterNet form learns its centre heatmap slowly from
# scratch (segm mAP 0.005 after 400 iterations, against 0.113 for this
# config; configs/centermask-point/README.md).
_base_ = [
    './centermask-point_vovnet-v2-19-slim-dw_ct-neck-32_1xb8-500i_shapes.py',
    '../_base_/models/centermask_fpn_fcos.py'
]

channels = 64

model = dict(
    data_preprocessor=dict(
        mean=[103.53, 116.28, 123.675], std=[1.0, 1.0, 1.0], bgr_to_rgb=False),
    backbone=dict(out_indices=(1, 2, 3)),
    # the quick start's FPN and FCOS head (configs/_base_/models/centermask_fpn_fcos.py)
    neck=dict(
        _base_.centermask_fpn,
        _delete_=True,
        in_channels=[256, 384, 512],
        out_channels=channels),
    bbox_head=dict(
        _base_.centermask_fcos_head,
        _delete_=True,
        type='CenterMaskFCOSPointHead',
        num_classes=3,
        in_channels=channels,
        feat_channels=channels,
        stacked_convs=2,
        shape_size=32,
        saliency_type='class_specific',
        mask_channels=channels),
    test_cfg=dict(
        _base_.centermask_fcos_test_cfg, _delete_=True, mask_thr_binary=0.5))

max_iters = 1600
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
_base_.param_scheduler[0].end = 100  # warm-up iterations
_base_.param_scheduler[1].end = max_iters
_base_.param_scheduler[1].milestones = [1400, 1550]
default_hooks = dict(checkpoint=dict(interval=500))
# The quick start's optimizer: AdamW with PyTorch's fused kernel (fused=False
# is the per-tensor loop, equal up to float32 rounding).
optim_wrapper = dict(optimizer=dict(fused=True))
