# Quick start, panoptic: Panoptic-CenterMask-Lite V2-19-slim-dw trained from scratch on the CPU
# on the bundled panoptic shapes set (tools/dataset_converters/make_shapes_dataset.py
# --panoptic: 3 shape "things" on bands of 3 "stuff" textures). The instance part is the
# CenterMask-Lite shapes quick start unchanged; added as in the V2-39 panoptic config: an FPN
# level P2 (the backbone's stage2 into the FPN) for the semantic FPN head (P2-P5, 64 channels
# here, GN, stride 4, 3 stuff classes + one "things" class, loss weight 0.5) and the
# thresholded heuristic fusion, its stuff area limit scaled to these images (4096 pixels at
# COCO's short side 800 ~ 160 at short side 160). Loading and PQ without panopticapi:
# LoadCocoPanopticAnnotations and CocoPanopticQualityMetric (mmcentermask).
_base_ = '../centermask/centermask-lite_vovnet-v2-19-slim-dw_fpn-64_1xb8-1600i_shapes.py'

data_root = 'data/shapes_panoptic/'
thing_classes = ('circle', 'rectangle', 'triangle')
stuff_classes = ('smooth', 'stripes', 'checks')
metainfo = dict(
    classes=thing_classes + stuff_classes,
    thing_classes=thing_classes,
    stuff_classes=stuff_classes)
channels = 64

model = dict(
    type='PanopticCenterMask',
    num_stuff_classes=len(stuff_classes),
    num_semantic_only_levels=1,  # P2 feeds the semantic head only
    data_preprocessor=dict(pad_seg=True, seg_pad_value=255),
    backbone=dict(out_indices=(0, 1, 2, 3)),  # stage2-stage5
    neck=dict(in_channels=[112, 256, 384, 512], num_outs=6),  # P2-P7
    semantic_head=dict(
        type='SemSegFPNHead',
        in_channels=channels,
        inner_channels=channels,
        start_level=0,  # P2
        end_level=4,  # up to P5
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True),
        loss_seg=dict(
            type='CrossEntropyLoss',
            ignore_index=255,
            avg_non_ignore=True,
            loss_weight=0.5)),
    panoptic_fusion_head=dict(type='ThresholdedHeuristicFusionHead'),
    test_cfg=dict(
        panoptic=dict(score_thr=0.5, mask_overlap=0.5, stuff_area_limit=160)))

# MMDetection's CocoPanopticDataset with the category checks (a typo, the file's category
# order, segments of unknown categories): mmcentermask.datasets.CheckedCocoPanopticDataset
dataset_type = 'CheckedCocoPanopticDataset'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='LoadCocoPanopticAnnotations',
        with_bbox=True,
        with_mask=True,
        with_seg=True),
    dict(
        type='RandomChoiceResize',
        scales=[(400, 128), (400, 144), (400, 160)],
        keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(400, 160), keep_ratio=True),
    dict(type='LoadCocoPanopticAnnotations'),
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
        metainfo=metainfo,
        ann_file='annotations/panoptic_train.json',
        data_prefix=dict(img='train/', seg='annotations/panoptic_train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/panoptic_val.json',
        data_prefix=dict(img='val/', seg='annotations/panoptic_val/'),
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    _delete_=True,
    type='CocoPanopticQualityMetric',
    ann_file=data_root + 'annotations/panoptic_val.json',
    seg_prefix=data_root + 'annotations/panoptic_val/',
    classwise=True)
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
