# Point-representation CenterMask trained from scratch on the CPU on the
# bundled shapes dataset (tools/dataset_converters/make_shapes_dataset.py,
# 3 classes), the counterpart of the Lee & Park quick start
# (configs/centermask/centermask-lite_vovnet-v2-19-slim-dw_fpn-64_1xb8-1600i_shapes.py)
# under the same budget, with the same backbone (VoVNetV2-19-slim-dw, its
# stride-32 output). Differences from the COCO recipe, all because there are
# no ImageNet weights and no GPU: that backbone instead of ResNet-18 (half
# the training FLOPs: 38 instead of 73 GFLOP per batch of 8 at 160 x 208,
# counted with torch.utils.flop_counter), trained from scratch with
# trainable BN; a light deconvolution neck without DCN (128, 64, 32
# filters) and 32-channel head branches; short side 128-160 (test: 160)
# instead of 512 crops; AdamW with gradient clipping and warm-up; 500
# iterations of batch 8, what fits in 20 minutes on the project's 2-core
# machine while other jobs share it (1.4-2.1 s per iteration with
# OMP_NUM_THREADS=1; two threads were 3-5x slower there, the cores being
# oversubscribed).
_base_ = './centermask-point_r18_8xb16-crop512-130e_coco.py'

data_root = 'data/shapes/'
classes = ('circle', 'rectangle', 'triangle')
metainfo = dict(classes=classes)

model = dict(
    backbone=dict(
        _delete_=True,
        type='VoVNet',
        arch='V-19-slim-dw',
        out_indices=(3, ),
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False),
    neck=dict(
        in_channels=512, num_deconv_filters=(128, 64, 32), use_dcn=False),
    bbox_head=dict(
        num_classes=len(classes), in_channels=32, feat_channels=32))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
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
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
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

max_iters = 500
train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=max_iters)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=50),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_iters,
        by_epoch=False,
        milestones=[430, 480],
        gamma=0.1)
]
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.002, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    clip_grad=dict(max_norm=10.0))
# Seeded, so that a run on the same machine reproduces the README's figures.
randomness = dict(seed=0)
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=False, interval=250, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(base_batch_size=8)
