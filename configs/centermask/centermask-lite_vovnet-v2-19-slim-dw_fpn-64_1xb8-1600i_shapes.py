# Quick start: CenterMask-Lite V2-19-slim-dw trained from scratch on the CPU on the bundled
# shapes dataset (tools/dataset_converters/make_shapes_dataset.py, 3 classes), in about
# 15 minutes on 2 cores. Differences from the COCO Lite recipe, all because there are no
# ImageNet weights and no GPU: trainable BN (no pretrained statistics to freeze), 64-channel
# FPN and heads, short side 128-160 (test: 160, the largest training scale, as detectron2
# tests at the largest), at most 50 FCOS detections per image as training RoIs
# (centermask2: 100) of which at most 8 positives per image train the mask and MaskIoU
# heads (centermask2: 128), channels-last tensors (faster convolutions on the CPU),
# AdamW (fused kernel) with gradient clipping, 1600 iterations of batch 8.
_base_ = './centermask-lite_vovnet-v2-19-slim-dw_fpn_ms-4x_coco.py'

data_root = 'data/shapes/'
classes = ('circle', 'rectangle', 'triangle')
metainfo = dict(classes=classes)
channels = 64

model = dict(
    num_classes=len(classes),
    channels_last=True,
    backbone=dict(
        norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False),
    neck=dict(out_channels=channels),
    bbox_head=dict(in_channels=channels, feat_channels=channels),
    roi_head=dict(
        mask_roi_extractor=dict(out_channels=channels),
        mask_head=dict(in_channels=channels, conv_out_channels=channels),
        mask_iou_head=dict(in_channels=channels, conv_out_channels=channels)),
    train_cfg=dict(
        fcos_proposal=dict(max_per_img=50),
        rcnn=dict(sampler=dict(num=32, pos_fraction=0.25))))

# The family's pipelines with the short sides above, resized with cv2 (mmdet's default
# backend), and LoadImageFromFile with its defaults.
train_pipeline = _base_.train_pipeline
train_pipeline[0] = dict(type='LoadImageFromFile')
train_pipeline[2] = dict(
    type='RandomChoiceResize',
    scales=[(400, 128), (400, 144), (400, 160)],
    keep_ratio=True)
test_pipeline = _base_.test_pipeline
test_pipeline[0] = dict(type='LoadImageFromFile')
test_pipeline[1] = dict(type='Resize', scale=(400, 160), keep_ratio=True)
# tools/test.py --tta: the family's TTA (each scale with and without flip) at short sides
# 128, 160 and 192 with cv2 resizing, as test_pipeline.
tta_pipeline = _base_.tta_pipeline
tta_pipeline[1]['transforms'][0] = [
    dict(type='Resize', scale=(480, s), keep_ratio=True) for s in (128, 160, 192)
]
train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/train.json',
        data_prefix=dict(img='train/'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=1,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/val.json')
test_evaluator = val_evaluator

max_iters = 1600
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
_base_.param_scheduler[0].end = 100  # warm-up iterations
_base_.param_scheduler[1].end = max_iters
_base_.param_scheduler[1].milestones = [1400, 1550]
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    # fused=True: PyTorch's one-pass AdamW kernel (the MaskIoU head's fcs
    # hold 4.3M of the 6.2M weights); it rounds differently from the
    # per-tensor loop (relative 1e-8 per step). fused=False is that loop.
    optimizer=dict(type='AdamW', lr=0.002, weight_decay=0.05, fused=True),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    clip_grad=dict(max_norm=10.0))
# Seeded, so that a run on the same machine reproduces the README's figures.
randomness = dict(seed=0)
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=500, max_keep_ckpts=1))
