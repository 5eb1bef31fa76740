"""Config of a CenterMask mask branch (two convs in each head) for tests."""


def centermask_roi_head_cfg(channels: int, num_classes: int,
                            fc_out_channels: int, **kwargs) -> dict:
    """``CenterMaskRoIHead`` config: RoIAlign 14 on strides 8-32, SAG-Mask
    and MaskIoU heads with 2 convs of ``channels``; ``kwargs`` go to the RoI
    head (``train_cfg``, ``test_cfg``, ``clip_boxes``...)."""
    return dict(
        type='CenterMaskRoIHead',
        mask_roi_extractor=dict(
            type='AdaptiveLevelRoIExtractor',
            roi_layer=dict(
                type='RoIAlign', output_size=14, sampling_ratio=0,
                aligned=True),
            out_channels=channels,
            featmap_strides=[8, 16, 32]),
        mask_head=dict(
            type='SAGMaskHead',
            num_convs=2,
            in_channels=channels,
            conv_out_channels=channels,
            num_classes=num_classes),
        mask_iou_head=dict(
            type='CenterMaskIoUHead',
            num_convs=2,
            num_fcs=2,
            roi_feat_size=14,
            in_channels=channels,
            conv_out_channels=channels,
            fc_out_channels=fc_out_channels,
            num_classes=num_classes),
        **kwargs)
