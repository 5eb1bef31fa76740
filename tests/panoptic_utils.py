"""Tiny Panoptic-CenterMask models, semantic GT and the centermask2
semantic-head key layout shared by the panoptic model and converter tests."""
from collections import OrderedDict

import numpy as np
import torch
from mmengine.structures import PixelData

from detector_utils import batch, tiny_cfg

#: VoVNet-19-slim-dw stage2 output channels (the extra FPN input)
STAGE2_CHANNELS = 112
NUM_STUFF = 2


def panoptic_cfg(model_cfg,
                 stage2_channels: int,
                 fpn_channels: int,
                 semantic_channels: int,
                 num_groups: int,
                 num_stuff: int = NUM_STUFF):
    """A CenterMask model config turned into Panoptic-CenterMask: stage2
    into the FPN (P2-P7), a semantic FPN head on P2-P5 and the fusion head
    (as ``configs/centermask-panoptic/``)."""
    model_cfg.type = 'PanopticCenterMask'
    model_cfg.num_stuff_classes = num_stuff
    model_cfg.data_preprocessor.update(pad_seg=True, seg_pad_value=255)
    model_cfg.backbone.out_indices = (0, 1, 2, 3)
    model_cfg.neck.in_channels = [stage2_channels] + list(
        model_cfg.neck.in_channels)
    model_cfg.neck.num_outs = 6
    model_cfg.semantic_head = dict(
        type='SemSegFPNHead',
        in_channels=fpn_channels,
        inner_channels=semantic_channels,
        norm_cfg=dict(type='GN', num_groups=num_groups, requires_grad=True))
    model_cfg.panoptic_fusion_head = dict(
        type='ThresholdedHeuristicFusionHead')
    model_cfg.test_cfg.panoptic = dict(
        score_thr=0.5, mask_overlap=0.5, stuff_area_limit=16)
    return model_cfg


def tiny_panoptic_cfg(num_classes: int = 3, num_stuff: int = NUM_STUFF):
    """:func:`detector_utils.tiny_cfg` (32 channels) as Panoptic-CenterMask
    with a 16-channel semantic head."""
    return panoptic_cfg(
        tiny_cfg(num_classes), STAGE2_CHANNELS, 32, 16, 8, num_stuff=num_stuff)


def panoptic_batch(model,
                   seeds,
                   num_things: int = 3,
                   num_stuff: int = NUM_STUFF,
                   training: bool = True):
    """Shapes images with a semantic GT: the instances' classes on their
    masks, stuff classes ``num_things + s`` in horizontal bands elsewhere and
    a 255 (ignored) border column."""
    data = batch(model, seeds, training=False)
    for sample in data['data_samples']:
        height, width = sample.img_shape
        sem = np.zeros((height, width), np.int64)
        band = np.arange(height)[:, None] * num_stuff // height
        sem[:] = num_things + band
        gt = sample.gt_instances
        masks = gt.masks.to_ndarray().astype(bool)
        for mask, label in zip(masks, gt.labels.tolist()):
            sem[mask] = label
        sem[:, -2:] = 255
        sample.gt_sem_seg = PixelData(sem_seg=torch.from_numpy(sem)[None])
    if training:
        data = model.data_preprocessor(
            dict(
                inputs=[
                    img[:, :s.img_shape[0], :s.img_shape[1]]
                    for img, s in zip(data['inputs'], data['data_samples'])
                ],
                data_samples=data['data_samples']), True)
    return data


def c2_semantic_head_layout(in_channels: int, channels: int,
                            num_classes: int) -> 'OrderedDict':
    """detectron2 ``SemSegFPNHead`` keys (P2-P5, GN, common stride 4), with
    the ``sem_seg_head.`` prefix: level L has ``max(1, L - 2)`` conv + GN
    blocks at positions 0, 2, 4 of its (conv, upsample) sequence."""
    layout = OrderedDict()
    for level in (2, 3, 4, 5):
        for j in range(max(1, level - 2)):
            prefix = f'sem_seg_head.p{level}.{2 * j}'
            cin = in_channels if j == 0 else channels
            layout[f'{prefix}.weight'] = (channels, cin, 3, 3)
            layout[f'{prefix}.norm.weight'] = (channels, )
            layout[f'{prefix}.norm.bias'] = (channels, )
    layout['sem_seg_head.predictor.weight'] = (num_classes, channels, 1, 1)
    layout['sem_seg_head.predictor.bias'] = (num_classes, )
    return layout


def c2_fpn_p2_layout(stage2_channels: int, channels: int) -> 'OrderedDict':
    """The P2 lateral and output convs of detectron2's FPN (with the
    ``backbone.`` prefix)."""
    return OrderedDict([
        ('backbone.fpn_lateral2.weight', (channels, stage2_channels, 1, 1)),
        ('backbone.fpn_lateral2.bias', (channels, )),
        ('backbone.fpn_output2.weight', (channels, channels, 3, 3)),
        ('backbone.fpn_output2.bias', (channels, )),
    ])
