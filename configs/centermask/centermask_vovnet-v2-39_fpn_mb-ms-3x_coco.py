# CenterMask V2-39 with the behaviour of the ORIGINAL maskrcnn-benchmark code ("MB",
# youngwanLEE/CenterMask `centermask_V_39_eSE_FPN_ms_3x.yaml`), for checkpoints converted with
#   python tools/model_converters/maskrcnn_benchmark_to_mmdet.py SRC DST \
#       --config configs/centermask/centermask_vovnet-v2-39_fpn_mb-ms-3x_coco.py
# (the converter folds MB's eps-free FrozenBN into the BN statistics and drops the background
# row of the 81-way mask and MaskIoU predictors). Other MB backbones: change `model.backbone` /
# `model.neck` as in the centermask2 configs of the family.
#
# Switched to MB here (every MB behaviour the code supports):
#   - pixel mean [102.9801, 115.9465, 122.7717] (BGR, std 1)
#   - FCOS: exp(scale * x) regression in pixels (norm_on_bbox=False), score cls x ctr (no sqrt),
#     decoded boxes clipped to [0, w-1] x [0, h-1], candidate threshold 0.03, NMS 0.6 with the
#     legacy +1 box convention (offset=1), 50 detections at test / 100 training RoIs,
#     MB loss normalisation (per GPU; cls / (num_pos + num_images), box / sum of centerness
#     targets, ctr / num_pos), GIoU with +1 smoothing in pixels and 1e-7 on the enclosing area
#   - RoIAlign legacy (aligned=False) with sampling ratio 2
#   - no cap on the foreground RoIs of the mask branch (MB uses every RoI with IoU >= 0.5)
#   - PIL bilinear resize (MB resizes PIL images with torchvision), uniform integer short side
#     in [640, 800] for training (MIN_SIZE_RANGE_TRAIN), 800 / 1333 test
#   - SGD: bias LR x2 and no bias weight decay, weight decay on norm weights, constant warm-up
#     1/3 x LR for 500 iterations, steps 210k / 250k of 270k
#
# NOT reproduced (mmcentermask keeps centermask2's behaviour; expect small differences):
#   - level mapper: MB uses eps 1e-6 and the legacy +1 box area ((x2-x1+1)(y2-y1+1)) in the ratio
#     rule; ours uses machine eps and the exact area (only RoIs right at a level border differ)
#   - legacy "+1" IoU of the RoI-to-GT matcher of the mask branch (ours: exact IoU)
#   - MB runs the mask/MaskIoU heads on all training RoIs (negatives on the background channel)
#     and re-matches them inside the loss; ours runs them on the positives only (same losses)
#   - MaskIoU targets: MB uses only the FIRST polygon of each instance for the area ratio, with
#     the full-area crop over proposal U polygon extent clipped to the image; ours: all polygons
#   - MB mask targets / test-time pasting use maskrcnn-benchmark's legacy SegmentationMask crop
#     and Masker (padding 1, +1 pixel conventions); ours: mmdet crop_and_resize and detectron2's
#     paste into the clipped box
#   - FrozenBN variances <= 1e-5 cannot be folded exactly (clamped; the converter counts them)
#   - bias LR x2 / zero bias weight decay also for norm-layer biases in MB; mmengine exempts
#     norm layers from bias_lr_mult / bias_decay_mult (GN biases of the FCOS head: LR x1, WD 1e-4)
#   - MB checkpoints trained without MaskIoU (V-19 ms_3x, M-v2 configs) cannot be loaded: our RoI
#     head always has the MaskIoU head (the converter stops with the list of missing keys)
#   - resized size: MB truncates the long side (int(size * w / h)), mmcv rounds it (<= 1 px)
#   - COCO 2014 train+valminusminival / minival splits (same images as 2017 train / val)
_base_ = './centermask_vovnet-v2-39_fpn_ms-3x_coco.py'

mb_nms = dict(type='nms', iou_threshold=0.6, offset=1)
model = dict(
    data_preprocessor=dict(mean=[102.9801, 115.9465, 122.7717]),
    bbox_head=dict(
        norm_on_bbox=False,
        score_sqrt=False,
        clip_boxes=True,
        loss_normalization='maskrcnn_benchmark',
        loss_bbox=dict(
            type='CenterMaskGIoULoss', enclose_eps=1e-7, loss_weight=1.0)),
    roi_head=dict(
        mask_roi_extractor=dict(
            roi_layer=dict(
                type='SparseRoIAlign', output_size=14, sampling_ratio=2,
                aligned=False))),
    train_cfg=dict(
        fcos_proposal=dict(score_thr=0.03, nms=mb_nms, max_per_img=100),
        rcnn=dict(sampler=dict(num=100000, pos_fraction=1.0))),
    test_cfg=dict(fcos=dict(score_thr=0.03, nms=mb_nms, max_per_img=50)))

# Uniform integer short side in [640, 800]; the test pipeline is the base's.
train_pipeline = _base_.train_pipeline
train_pipeline[2] = dict(
    type='RandomResize',
    scale=[(1333, 640), (1333, 800)],
    keep_ratio=True,
    backend='pillow')
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

# Constant warm-up at 1/3 of the LR (the base's steps at 210k and 250k of 270k).
_base_.param_scheduler[0] = dict(
    type='ConstantLR', factor=1.0 / 3, by_epoch=False, begin=0, end=500)
optim_wrapper = dict(
    paramwise_cfg=dict(
        norm_decay_mult=1.0, bias_lr_mult=2.0, bias_decay_mult=0.0))
