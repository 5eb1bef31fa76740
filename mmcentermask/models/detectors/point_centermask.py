"""Point-representation CenterMask (Wang et al., CVPR 2020) detector."""
from mmdet.models.detectors import CenterNet
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig

from mmcentermask.utils.weight_check import guard_weight_loading
from ..utils import check_class_count


@MODELS.register_module()
class PointCenterMask(CenterNet):
    """CenterMask: Single Shot Instance Segmentation with Point
    Representation (Wang, Xu, Shen, Cheng, Yang, CVPR 2020,
    <https://arxiv.org/abs/2004.04446>).

    CenterNet with :class:`CenterMaskPointHead` as ``bbox_head``: the head
    adds Shape and Saliency branches and returns ``masks`` with the boxes.
    Registered under its own name so that it cannot be confused with Lee &
    Park's ``CenterMask`` of this package.

    Args:
        backbone (dict): Backbone config (one or several stride-4 maps
            after the neck).
        neck (dict, optional): Neck config (``CTResNetNeck``, ``DLAUpNeck``)
            or None (HourglassNet).
        bbox_head (dict): :class:`CenterMaskPointHead` config.
        train_cfg (dict, optional): Head training config (unused).
        test_cfg (dict, optional): Head test config.
        data_preprocessor (dict, optional): Data preprocessor config.
        init_cfg (dict or list[dict], optional): Initialisation config.
    """

    def __init__(self,
                 backbone: ConfigType,
                 neck: OptConfigType,
                 bbox_head: ConfigType,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        check_class_count(bbox_head.get('num_classes'), 'PointCenterMask')
        super().__init__(
            backbone=backbone,
            neck=neck,
            bbox_head=bbox_head,
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        guard_weight_loading(self)  # foreign or partial weights are an error
