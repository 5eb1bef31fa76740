# CenterMask's FPN and FCOS head (centermask2's MODEL.FPN and MODEL.FCOS, 256 channels) as
# pieces for configs of more than one family: the CenterMask family base
# (configs/centermask/centermask_vovnet-v2-39_fpn_ms-3x_coco.py) builds its neck, FCOS head and
# FCOS test settings from them, and so does the point-representation CenterMask embedded into
# FCOS (configs/centermask-point/centermask-point_fcos_*_shapes.py).

# FPN on the backbone's stage3-5 (strides 8-32), P3-P7: P6 from the P5 output, P7 from ReLU(P6).
centermask_fpn = dict(
    type='FPN',
    in_channels=[512, 768, 1024],
    out_channels=256,
    start_level=0,
    add_extra_convs='on_output',
    relu_before_extra_convs=True,
    num_outs=5,
    init_cfg=dict(type='Caffe2Xavier', layer='Conv2d'))
# FCOS head settings (the head type is the detector's): 4-conv GN towers on P3-P7, distances
# in stride units, centerness from the regression tower, centre sampling (radius 1.5), focal
# loss, GIoU as centermask2 computes it.
centermask_fcos_head = dict(
    in_channels=256,
    feat_channels=256,
    stacked_convs=4,
    strides=[8, 16, 32, 64, 128],
    norm_on_bbox=True,
    centerness_on_reg=True,
    center_sampling=True,
    center_sample_radius=1.5,
    conv_bias=True,
    norm_cfg=dict(type='GN', num_groups=32, requires_grad=True),
    loss_cls=dict(
        type='FocalLoss',
        use_sigmoid=True,
        gamma=2.0,
        alpha=0.25,
        loss_weight=1.0),
    loss_bbox=dict(type='CenterMaskGIoULoss', loss_weight=1.0),
    loss_centerness=dict(
        type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0))
# FCOS detections at test time: 1000 candidates per level above score 0.05, NMS at IoU 0.6,
# 50 per image.
centermask_fcos_test_cfg = dict(
    nms_pre=1000,
    score_thr=0.05,
    nms=dict(type='nms', iou_threshold=0.6),
    max_per_img=50)
