# Panoptic-CenterMask V2-39 (centermask2 `panoptic_centermask_V_39_eSE_FPN_ms_3x.yaml`):
# CenterMask V2-39 unchanged on P3-P7, an FPN level P2 for detectron2's semantic FPN head
# (P2-P5, 128 channels, GN, stride 4, 53 stuff classes + one "things" class, loss weight 0.5)
# and detectron2's panoptic combination. COCO panoptic data through MMDetection's
# CocoPanopticDataset (checked); the 3x schedule of the base.
_base_ = ['../centermask/centermask_vovnet-v2-39_fpn_ms-3x_coco.py']

num_stuff_classes = 53  # the one place; PanopticCenterMask passes it to both heads
fpn_channels = 256

model = dict(
    type='PanopticCenterMask',
    num_stuff_classes=num_stuff_classes,
    num_semantic_only_levels=1,  # P2 feeds the semantic head only
    # GT semantic maps padded with the ignore label, as detectron2.
    data_preprocessor=dict(pad_seg=True, seg_pad_value=255),
    backbone=dict(out_indices=(0, 1, 2, 3)),  # stage2-stage5
    neck=dict(in_channels=[256, 512, 768, 1024], num_outs=6),  # P2-P7
    semantic_head=dict(
        type='SemSegFPNHead',
        in_channels=fpn_channels,
        inner_channels=128,
        start_level=0,  # P2
        end_level=4,  # up to P5
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True),
        loss_seg=dict(
            type='CrossEntropyLoss',
            ignore_index=255,
            avg_non_ignore=True,
            loss_weight=0.5)),
    panoptic_fusion_head=dict(type='ThresholdedHeuristicFusionHead'),
    # detectron2's PANOPTIC_FPN.COMBINE: box score >= 0.5, overlap 0.5, stuff >= 4096 px.
    test_cfg=dict(
        panoptic=dict(score_thr=0.5, mask_overlap=0.5,
                      stuff_area_limit=4096)))

# Data: COCO panoptic through mmcentermask's CheckedCocoPanopticDataset (MMDetection's
# CocoPanopticDataset with category checks: a misspelt class, the file's category order,
# segments of unknown categories), LoadCocoPanopticAnnotations and CocoPanopticQualityMetric
# (MMDetection's LoadPanopticAnnotations and CocoPanopticMetric, without their panopticapi
# import); the base's resizing (PIL bilinear, short side 640-800 choice; the semantic GT is
# resized nearest).
dataset_type = 'CheckedCocoPanopticDataset'
data_root = 'data/coco/'
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(
        type='LoadCocoPanopticAnnotations',
        with_bbox=True,
        with_mask=True,
        with_seg=True,
        backend_args={{_base_.backend_args}}),
    dict(
        type='RandomChoiceResize',
        scales={{_base_.train_scales}},
        keep_ratio=True,
        backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(
        type='Resize',
        scale={{_base_.test_scale}},
        keep_ratio=True,
        backend='pillow'),
    dict(
        type='LoadCocoPanopticAnnotations',
        backend_args={{_base_.backend_args}}),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/panoptic_train2017.json',
        data_prefix=dict(
            img='train2017/', seg='annotations/panoptic_train2017/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=train_pipeline,
        backend_args={{_base_.backend_args}}))
val_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/panoptic_val2017.json',
        data_prefix=dict(img='val2017/', seg='annotations/panoptic_val2017/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args={{_base_.backend_args}}))
test_dataloader = val_dataloader
val_evaluator = dict(
    _delete_=True,
    type='CocoPanopticQualityMetric',
    ann_file=data_root + 'annotations/panoptic_val2017.json',
    seg_prefix=data_root + 'annotations/panoptic_val2017/',
    backend_args={{_base_.backend_args}})
test_evaluator = val_evaluator
# No panoptic test-time augmentation.
tta_model = None
tta_pipeline = None
# PanopticNumClassCheckHook in place of MMDetection's NumClassCheckHook (which compares the
# things + stuff classes with the instance heads' thing count).
custom_hooks = [
    dict(type='PanopticNumClassCheckHook'),
    dict(type='NonFiniteLossHook'),
    dict(type='FuseConvBNHook'),
    dict(type='ReuseCPUMemoryHook')
]
