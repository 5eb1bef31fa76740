# Point-representation CenterMask (Wang et al., CVPR 2020) with CenterNet's
# ResNet-18 + deconvolution neck (CTResNetNeck, DCNv2) at stride 4: the
# family base. The paper reports Hourglass-104 and DLA-34, not this backbone;
# it is the cheap member (CenterNet's smoke model). Recipe from the spec:
# 512 x 512 CenterNet crops, Adam 2.5e-4 at batch 128, 130 epochs with steps
# at 100 and 120, top-100 peaks and no NMS at test time, CenterNet's test
# padding (logical or with 31, plus one pixel).
_base_ = [
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/default_runtime.py', '../_base_/plugins/mmcentermask.py'
]

model = dict(
    type='PointCenterMask',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_mask=True,
        pad_size_divisor=32),
    backbone=dict(
        type='ResNet',
        depth=18,
        norm_eval=False,
        norm_cfg=dict(type='BN'),
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet18')),
    neck=dict(
        type='CTResNetNeck',
        in_channels=512,
        num_deconv_filters=(256, 128, 64),
        num_deconv_kernels=(4, 4, 4),
        use_dcn=True),
    bbox_head=dict(
        type='CenterMaskPointHead',
        num_classes=80,
        in_channels=64,
        feat_channels=64,
        shape_size=32,
        saliency_type='class_specific',
        num_feat_levels=1,
        loss_center_heatmap=dict(
            type='GaussianFocalLoss', alpha=2.0, gamma=4.0, loss_weight=1.0),
        loss_wh=dict(type='L1Loss', loss_weight=0.1),
        loss_offset=dict(type='L1Loss', loss_weight=1.0),
        loss_mask_weight=1.0,
        loss_saliency=dict(
            type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0)),
    train_cfg=None,
    test_cfg=dict(
        topk=100, local_maximum_kernel=3, score_thr=0.0, mask_thr_binary=0.5))

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PhotoMetricDistortion',
        brightness_delta=32,
        contrast_range=(0.5, 1.5),
        saturation_range=(0.5, 1.5),
        hue_delta=18),
    dict(
        type='RandomCenterCropPadWithMask',
        crop_size=(512, 512),
        ratios=(0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3),
        mean=[0, 0, 0],
        std=[1, 1, 1],
        to_rgb=True,
        test_pad_mode=None),
    dict(type='Resize', scale=(512, 512), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(
        type='LoadImageFromFile',
        backend_args={{_base_.backend_args}},
        to_float32=True),
    dict(
        type='RandomCenterCropPadWithMask',
        crop_size=None,
        ratios=None,
        border=None,
        mean=[0, 0, 0],
        std=[1, 1, 1],
        to_rgb=True,
        test_mode=True,
        test_pad_mode=['logical_or', 31],
        test_pad_add_pix=1),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'border'))
]
train_dataloader = dict(
    batch_size=16,
    num_workers=4,
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

max_epochs = 130
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper', optimizer=dict(type='Adam', lr=2.5e-4))
param_scheduler = [
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[100, 120],
        gamma=0.1)
]
# crash-safe checkpoints; the plugin base adds the imports and the other hooks
default_hooks = dict(
    checkpoint=dict(
        type='CrashSafeCheckpointHook', interval=10, max_keep_ckpts=3))
# The learning rate is for 8 GPUs x 16 images; --auto-scale-lr scales it.
auto_scale_lr = dict(base_batch_size=128)
