# VoVNetV2-39 (eSE, identity) as vovnet-detectron2 trains it under MMDetection's detectors
# (configs/vovnet/): frozen BN (detectron2's FrozenBN: statistics and affine parameters
# fixed), FREEZE_AT 0 (no stage frozen), stage2-5 out (a detector feeding stage3-5 only
# overrides out_indices), caffe-style BGR input with std 1. init_cfg=None trains from random
# init; for ImageNet weights see configs/vovnet/README.md. A config takes these with
# model = dict(data_preprocessor=caffe_bgr_data_preprocessor,
#              backbone=dict(vovnet_v2_39_backbone, _delete_=True))
caffe_bgr_data_preprocessor = dict(
    mean=[103.53, 116.28, 123.675], std=[1.0, 1.0, 1.0], bgr_to_rgb=False)
vovnet_v2_39_backbone = dict(
    type='VoVNet',
    arch='V-39',
    out_indices=(0, 1, 2, 3),
    frozen_stages=-1,
    norm_cfg=dict(type='BN', requires_grad=False),
    norm_eval=True,
    init_cfg=None)
