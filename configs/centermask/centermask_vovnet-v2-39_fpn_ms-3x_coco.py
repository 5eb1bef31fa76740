# CenterMask V2-39 (centermask2 `centermask_V_39_eSE_FPN_ms_3x.yaml`): the family base.
# Every other CenterMask config is a small delta of this file.
_base_ = [
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/default_runtime.py', '../_base_/plugins/mmcentermask.py',
    '../_base_/models/centermask_fpn_fcos.py'
]

num_classes = 80  # the one place; CenterMask passes it to every head
fpn_channels = 256

model = dict(
    type='CenterMask',
    num_classes=num_classes,
    # centermask2 feeds BGR 0-255 images minus the caffe mean, std 1, padded to 32.
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[103.530, 116.280, 123.675],
        std=[1.0, 1.0, 1.0],
        bgr_to_rgb=False,
        pad_size_divisor=32),
    backbone=dict(
        type='VoVNet',
        arch='V-39',
        out_indices=(1, 2, 3),
        frozen_stages=-1,
        # detectron2 FrozenBN: statistics and affine parameters fixed.
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        # Point this at an ImageNet VoVNet converted with
        # tools/model_converters/vovnet2mmdet.py, e.g.
        # init_cfg=dict(type='Pretrained', checkpoint='checkpoints/vovnet39.pth')
        init_cfg=None),
    # FPN P3-P7 and FCOS head: configs/_base_/models/centermask_fpn_fcos.py
    neck=dict(_base_.centermask_fpn, out_channels=fpn_channels),
    bbox_head=dict(
        _base_.centermask_fcos_head,
        type='CenterMaskFCOSHead',
        in_channels=fpn_channels,
        feat_channels=fpn_channels,
        dcn_on_last_conv=False),
    roi_head=dict(
        type='CenterMaskRoIHead',
        mask_roi_extractor=dict(
            type='AdaptiveLevelRoIExtractor',
            roi_layer=dict(
                type='SparseRoIAlign', output_size=14, sampling_ratio=0,
                aligned=True),
            out_channels=fpn_channels,
            featmap_strides=[8, 16, 32]),
        mask_head=dict(
            type='SAGMaskHead',
            num_convs=4,
            in_channels=fpn_channels,
            conv_out_channels=256,
            loss_mask=dict(
                type='CrossEntropyLoss', use_mask=True, loss_weight=1.0)),
        mask_iou_head=dict(
            type='CenterMaskIoUHead',
            num_convs=4,
            num_fcs=2,
            roi_feat_size=14,
            in_channels=fpn_channels,
            conv_out_channels=256,
            fc_out_channels=1024,
            loss_iou=dict(type='MSELoss', loss_weight=0.5))),
    train_cfg=dict(
        fcos=None,
        # FCOS detections that become the mask RoIs while training.
        fcos_proposal=dict(
            nms_pre=1000,
            score_thr=0.05,
            nms=dict(type='nms', iou_threshold=0.6),
            max_per_img=100),
        rcnn=dict(
            assigner=dict(
                type='MaxIoUAssigner',
                pos_iou_thr=0.5,
                neg_iou_thr=0.5,
                min_pos_iou=0.5,
                match_low_quality=False,
                ignore_iof_thr=-1),
            sampler=dict(
                type='RandomSampler',
                num=512,
                pos_fraction=0.25,
                neg_pos_ub=-1,
                add_gt_as_proposals=True),
            mask_size=28,
            pos_weight=-1,
            mask_thr_binary=0.0)),  # MaskIoU targets use logits > 0
    test_cfg=dict(
        fcos=_base_.centermask_fcos_test_cfg, rcnn=dict(mask_thr_binary=0.5)))

# Data: ResizeShortestEdge "choice" of short sides, max side 1333, flip 0.5.
# poly2mask=False keeps polygons, which the MaskIoU targets need (as in centermask2).
# backend='pillow': detectron2 resizes with PIL bilinear; mmdet's default cv2 differs by one grey
# level in 20-30% of the pixels (docs/fidelity.md). backend='cv2' is faster.
train_scales = [(1333, s) for s in range(640, 801, 32)]
test_scale = (1333, 800)
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(
        type='LoadAnnotations', with_bbox=True, with_mask=True,
        poly2mask=False),
    dict(
        type='RandomChoiceResize',
        scales=train_scales,
        keep_ratio=True,
        backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=test_scale, keep_ratio=True, backend='pillow'),
    dict(
        type='LoadAnnotations', with_bbox=True, with_mask=True,
        poly2mask=False),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
# Test-time augmentation (tools/test.py --tta): detectron2's TTA defaults, which the authors'
# "TTA" row presumably used (no config of theirs sets TEST.AUG): short sides 400-1200 step 100,
# long side <= 4000, each with and without horizontal flip. Masks are averaged over the views.
tta_model = dict(type='CenterMaskTTAModel')
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(
        type='TestTimeAug',
        transforms=[
            [
                dict(
                    type='Resize',
                    scale=(4000, s),
                    keep_ratio=True,
                    backend='pillow') for s in range(400, 1201, 100)
            ],
            [
                dict(type='RandomFlip', prob=0.),
                dict(type='RandomFlip', prob=1.)
            ],
            [
                dict(
                    type='LoadAnnotations',
                    with_bbox=True,
                    with_mask=True,
                    poly2mask=False)
            ],
            [
                dict(
                    type='PackDetInputs',
                    meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                               'scale_factor', 'flip', 'flip_direction'))
            ]
        ])
]
# CheckedCocoDataset: mmdet's CocoDataset that checks the annotation file while loading it
# (class names, category ids, NaN/degenerate polygons, RLE with poly2mask=False, empty set).
train_dataloader = dict(
    batch_size=2,  # x 8 GPUs = the authors' batch of 16
    num_workers=2,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='CheckedCocoDataset', pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(type='CheckedCocoDataset', pipeline=test_pipeline))
test_dataloader = val_dataloader

# Schedule "3x": 270k iterations at batch 16, steps at 210k and 250k,
# linear warm-up over 1000 iterations from 0.001 x lr.
max_iters = 270000
lr_steps = [210000, 250000]
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=10000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=1000),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_iters,
        by_epoch=False,
        milestones=lr_steps,
        gamma=0.1)
]
# SGD 0.01 at batch 16, weight decay 1e-4 and none on norm layers.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001),
    paramwise_cfg=dict(norm_decay_mult=0.0))
auto_scale_lr = dict(enable=False, base_batch_size=16)

# CrashSafeCheckpointHook: MMEngine's CheckpointHook that survives a kill mid-save and
# restores torch's RNG on resume; NonFiniteLossHook stops at the first NaN/inf loss before
# a checkpoint is written (mmcentermask/engine/hooks/).
default_hooks = dict(
    checkpoint=dict(
        type='CrashSafeCheckpointHook',
        by_epoch=False,
        interval=10000,
        max_keep_ckpts=3))
log_processor = dict(by_epoch=False)
# FuseConvBNHook: the backbone BNs folded into their convs before
# tools/test.py (exact up to float32 rounding, see the hook).
# ReuseCPUMemoryHook: on the CPU, freed memory stays mapped for the next image
# (no page faults on the large feature maps; outputs unchanged).
# This list replaces the plugin base's (NonFiniteLossHook, ReuseCPUMemoryHook).
custom_hooks = [
    dict(type='NumClassCheckHook'),
    dict(type='NonFiniteLossHook'),
    dict(type='FuseConvBNHook'),
    dict(type='ReuseCPUMemoryHook')
]
