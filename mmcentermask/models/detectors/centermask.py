"""CenterMask: an FCOS detector whose detections are the RoIs of a mask
branch (Lee & Park, "CenterMask: Real-Time Anchor-Free Instance
Segmentation", CVPR 2020)."""
import copy
from typing import List, Optional, Tuple, Union

import torch
from mmcv.ops import DeformConv2d, ModulatedDeformConv2d, RoIAlign
from mmdet.models.detectors import SingleStageDetector
from mmdet.registry import MODELS
from mmdet.structures import OptSampleList, SampleList
from mmdet.utils import (ConfigType, InstanceList, OptConfigType,
                         OptMultiConfig)
from torch import Tensor, nn

from mmcentermask.utils.weight_check import guard_weight_loading
from ..layers import SparseRoIAlign
from ..utils import check_class_count
from .inference_settings import check_test_cfg

# mmcv ops whose kernels index their input as contiguous NCHW and silently
# compute garbage on a channels-last tensor (SparseRoIAlign takes either).
NCHW_ONLY_OPS = (RoIAlign, DeformConv2d, ModulatedDeformConv2d)
CHANNELS_LAST_CHOICES = (True, False, 'cpu')


@MODELS.register_module()
class CenterMask(SingleStageDetector):
    """CenterMask and CenterMask-Lite.

    Backbone -> FPN (P3-P7) -> FCOS head (``bbox_head``, class-aware
    detections) -> mask-only RoI head (``roi_head``: RoIAlign on P3-P5,
    SAG-Mask head, MaskIoU head). With ``num_mask_only_levels=1`` the FPN
    also outputs a stride-4 P2 that only the mask branch reads (RoIAlign on
    P2-P5, for small objects); the FCOS head still reads P3-P7. There is no
    second-stage box head: boxes, labels and box scores are the FCOS
    outputs; the RoI head adds ``masks`` and ``mask_scores`` (box score x
    predicted mask IoU).

    The FCOS head is kept under the attribute ``bbox_head`` so that mmdet
    FCOS checkpoints load directly.

    Args:
        backbone (dict): Backbone config.
        neck (dict): Neck config (FPN with P3-P7 outputs).
        bbox_head (dict): FCOS head config.
        roi_head (dict): Mask-only RoI head config.
        train_cfg (dict, optional): ``fcos`` (head train cfg, may be
            None), ``fcos_proposal`` (post-processing of the training
            detections that become mask RoIs) and ``rcnn`` (RoI head).
        test_cfg (dict, optional): ``fcos`` (post-processing) and ``rcnn``
            (mask binarisation threshold).
        data_preprocessor (dict, optional): Data preprocessor config.
        init_cfg (dict or list[dict], optional): Initialisation config.
        num_mask_only_levels (int): Leading FPN levels (finer than P3) that
            only the mask branch reads: 0 is the authors' model (P3-P7
            for both), 1 adds P2 (neck ``num_outs`` 6 with the backbone's
            stride-4 stage, extractor ``featmap_strides`` ``[4, 8, 16,
            32]``). Defaults to 0.
        num_classes (int, optional): Number of foreground classes, given
            once here and passed to the FCOS head, the mask head and the
            MaskIoU head. A head config that states a different value is
            an error.
        channels_last (bool or str): Run the network on channels-last
            (NHWC) tensors: True (always), False (NCHW, centermask2's
            layout) or ``'cpu'`` (NHWC when the input is on the CPU, NCHW
            on a GPU, where it is not measured yet). On the CPU (oneDNN) we
            measured 4-25% faster training steps and 12-19% faster
            inference (docs/benchmarks.md); results equal up to float32
            summation order. mmcv ops that need NCHW input (RoIAlign,
            deformable convs) get contiguous copies; SparseRoIAlign reads
            channels-last maps as they are. Defaults to ``'cpu'``.
    """

    def __init__(self,
                 backbone: ConfigType,
                 neck: ConfigType,
                 bbox_head: ConfigType,
                 roi_head: ConfigType,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 init_cfg: OptMultiConfig = None,
                 num_classes: Optional[int] = None,
                 channels_last: Union[bool, str] = 'cpu',
                 num_mask_only_levels: int = 0) -> None:
        train_cfg = train_cfg or {}
        test_cfg = test_cfg or {}
        bbox_head = copy.deepcopy(bbox_head)
        roi_head = copy.deepcopy(roi_head)
        check_class_count(
            bbox_head.get('num_classes') if num_classes is None else
            num_classes, 'CenterMask')
        if num_classes is not None:
            inject_num_classes(
                num_classes,
                bbox_head=bbox_head,
                mask_head=roi_head.get('mask_head'),
                mask_iou_head=roi_head.get('mask_iou_head'))
        super().__init__(
            backbone=backbone,
            neck=neck,
            bbox_head=bbox_head,
            train_cfg=train_cfg.get('fcos'),
            test_cfg=test_cfg.get('fcos'),
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        self.num_classes = num_classes
        roi_head.update(
            train_cfg=train_cfg.get('rcnn'), test_cfg=test_cfg.get('rcnn'))
        self.roi_head = MODELS.build(roi_head)
        # the whole cfgs (``fcos``, ``fcos_proposal``, ``rcnn``), not only
        # the FCOS head's part that SingleStageDetector keeps
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        check_num_classes(self)
        self.num_mask_only_levels = num_mask_only_levels
        check_mask_levels(self)
        guard_weight_loading(self)  # unconverted or foreign weights are an error
        check_test_cfg(test_cfg)  # missing or out-of-range test settings, now
        if channels_last not in CHANNELS_LAST_CHOICES:
            raise ValueError(
                f'channels_last={channels_last!r} is not one of '
                f'{CHANNELS_LAST_CHOICES}: True (NHWC), False (NCHW) or '
                "'cpu' (NHWC on the CPU only)")
        self.channels_last = channels_last
        if channels_last is not False:
            for module in self.modules():
                if isinstance(module, NCHW_ONLY_OPS) and not isinstance(
                        module, SparseRoIAlign):
                    module.register_forward_pre_hook(_contiguous_inputs)

    def extract_feat(self, batch_inputs: Tensor) -> Tuple[Tensor]:
        """Backbone + FPN features, channels-last if so configured.

        Args:
            batch_inputs (Tensor): Images (B, 3, H, W), normalised, padded.

        Returns:
            tuple[Tensor]: FPN levels P3-P7 (P2-P7 with a mask-only P2),
            each (B, C, H_l, W_l).
        """
        if self.uses_channels_last(batch_inputs.device):
            batch_inputs = batch_inputs.contiguous(
                memory_format=torch.channels_last)
        return super().extract_feat(batch_inputs)

    def uses_channels_last(self, device: torch.device) -> bool:
        """Whether the network runs on NHWC tensors on ``device``."""
        if self.channels_last == 'cpu':
            return device.type == 'cpu'
        return self.channels_last

    def fcos_feats(self, x: Tuple[Tensor]) -> Tuple[Tensor]:
        """The FPN levels the FCOS head reads (P3-P7) out of all."""
        return x[self.num_mask_only_levels:]

    def mask_feats(self, x: Tuple[Tensor]) -> Tuple[Tensor]:
        """The FPN levels the mask branch reads from (P3 or P2 on)."""
        return x

    @property
    def proposal_cfg(self) -> ConfigType:
        """Post-processing of the FCOS detections used as training RoIs."""
        return self.train_cfg.get('fcos_proposal', self.test_cfg.get('fcos'))

    def loss(self, batch_inputs: Tensor,
             batch_data_samples: SampleList) -> dict:
        """FCOS losses plus mask and MaskIoU losses.

        Args:
            batch_inputs (Tensor): Images (B, 3, H, W), normalised, padded.
            batch_data_samples (list[DetDataSample]): GT boxes, labels,
                masks and image metas.

        Returns:
            dict[str, Tensor]: ``loss_cls``, ``loss_bbox``,
            ``loss_centerness``, ``loss_mask``, ``loss_mask_iou``.
        """
        return self.instance_loss(
            self.extract_feat(batch_inputs), batch_data_samples)

    def instance_loss(self, x: Tuple[Tensor],
                      batch_data_samples: SampleList) -> dict:
        """:meth:`loss` on the FPN levels ``x`` (all the neck's outputs)."""
        losses, detections = self.bbox_head.loss_and_predict(
            self.fcos_feats(x),
            batch_data_samples,
            proposal_cfg=self.proposal_cfg)
        losses.update(
            self.roi_head.loss(
                self.mask_feats(x), detections, batch_data_samples))
        return losses

    def predict(self,
                batch_inputs: Tensor,
                batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """Detect and segment.

        Args:
            batch_inputs (Tensor): Images (B, 3, H, W), normalised, padded.
            batch_data_samples (list[DetDataSample]): Image metas.
            rescale (bool): Return boxes and masks in the original image
                frame (True) or in the resized frame.

        Returns:
            list[DetDataSample]: ``pred_instances`` with ``bboxes`` (N, 4)
            xyxy pixels, ``scores`` (N,), ``labels`` (N,), ``masks``
            (N, H, W) bool and ``mask_scores`` (N,).
        """
        results = self.instance_predict(
            self.extract_feat(batch_inputs), batch_data_samples, rescale)
        return self.add_pred_to_datasample(batch_data_samples, results)

    def instance_predict(self, x: Tuple[Tensor],
                         batch_data_samples: SampleList,
                         rescale: bool) -> InstanceList:
        """The detections of :meth:`predict` from the FPN levels ``x`` (all
        the neck's outputs), one :obj:`InstanceData` per image."""
        detections = self.bbox_head.predict(
            self.fcos_feats(x), batch_data_samples, rescale=False)
        return self.roi_head.predict(
            self.mask_feats(x),
            detections,
            batch_data_samples,
            rescale=rescale)

    def _forward(self,
                 batch_inputs: Tensor,
                 batch_data_samples: OptSampleList = None) -> Tuple:
        """Tensor mode (``get_flops``, export): raw network outputs.

        Returns:
            tuple: the FCOS outputs ``(cls_scores, bbox_preds,
            centernesses)`` (lists over P3-P7 of (B, C, H_l, W_l),
            (B, 4, H_l, W_l), (B, 1, H_l, W_l)) followed by the RoI head's
            tensor outputs on the FCOS detections.
        """
        return self.instance_forward(
            self.extract_feat(batch_inputs), batch_inputs, batch_data_samples)

    def instance_forward(self, x: Tuple[Tensor], batch_inputs: Tensor,
                         batch_data_samples: OptSampleList) -> Tuple:
        """The outputs of :meth:`_forward` from the FPN levels ``x`` (all
        the neck's outputs)."""
        fcos_outs = self.bbox_head.forward(self.fcos_feats(x))
        metas = image_metas(batch_inputs, batch_data_samples)
        detections = self.bbox_head.predict_by_feat(
            *fcos_outs, batch_img_metas=metas, rescale=False)
        roi_outs = self.roi_head.forward(
            self.mask_feats(x), detections, batch_data_samples)
        return tuple(fcos_outs) + tuple(roi_outs)


def _contiguous_inputs(module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook: NCHW-contiguous copies of the tensor arguments."""
    return tuple(a.contiguous() if isinstance(a, Tensor) else a for a in args)


def image_metas(batch_inputs: Tensor,
                batch_data_samples: OptSampleList) -> List[dict]:
    """Image metas of the samples, or the padded input size if none."""
    if batch_data_samples is not None:
        return [s.metainfo for s in batch_data_samples]
    h, w = batch_inputs.shape[-2:]
    return [
        dict(
            img_shape=(h, w),
            ori_shape=(h, w),
            pad_shape=(h, w),
            batch_input_shape=(h, w),
            scale_factor=(1., 1.)) for _ in range(batch_inputs.shape[0])
    ]


def inject_num_classes(num_classes: int, **head_cfgs: Optional[dict]) -> None:
    """Set ``num_classes`` in every given head config (in place).

    Raises:
        ValueError: if a head config already states another value.
    """
    for name, cfg in head_cfgs.items():
        if cfg is None:
            continue
        stated = cfg.get('num_classes', num_classes)
        if stated != num_classes:
            raise ValueError(
                f'CenterMask(num_classes={num_classes}) but its {name} '
                f'config says num_classes={stated}; remove num_classes from '
                'the head config or make them equal.')
        cfg['num_classes'] = num_classes


def check_mask_levels(detector: CenterMask) -> None:
    """Raise ValueError if the mask RoI extractor's first stride is not the
    stride of the first FPN level the mask branch reads (the FCOS head's
    first stride / 2 ** ``num_mask_only_levels``)."""
    levels = detector.num_mask_only_levels
    if not isinstance(levels, int) or levels < 0:
        raise ValueError(
            f'num_mask_only_levels={levels!r}: it must be 0 (the authors\' '
            'P3-P7) or the number of FPN levels finer than P3 that only the '
            'mask branch reads (1: P2)')
    extractor = getattr(detector.roi_head, 'mask_roi_extractor', None)
    fcos_strides = getattr(detector.bbox_head, 'strides', None)
    if extractor is None or not fcos_strides:
        return
    first_stride = fcos_strides[0]
    if isinstance(first_stride, (tuple, list)):
        first_stride = first_stride[0]
    expected = first_stride / 2**levels
    if extractor.featmap_strides[0] != expected:
        raise ValueError(
            f'num_mask_only_levels={levels} with FCOS strides from '
            f'{first_stride}: the mask branch reads FPN levels from stride '
            f'{expected:g}, but roi_head.mask_roi_extractor.featmap_strides '
            f'is {list(extractor.featmap_strides)}. Start featmap_strides at '
            f'{expected:g} (and give the neck num_outs = 5 + '
            'num_mask_only_levels from the backbone stage of that stride).')


def check_num_classes(detector: CenterMask) -> None:
    """Raise ValueError if the heads disagree on the number of classes."""
    heads = dict(bbox_head=detector.bbox_head)
    for name in ('mask_head', 'mask_iou_head'):
        head = getattr(detector.roi_head, name, None)
        if head is not None:
            heads[f'roi_head.{name}'] = head
    counts = {
        name: getattr(head, 'num_classes', None)
        for name, head in heads.items()
    }
    if len(set(counts.values())) > 1:
        found = ', '.join(f'{k}={v}' for k, v in counts.items())
        raise ValueError(
            f'CenterMask heads disagree on num_classes ({found}); set '
            'num_classes once at the top of the config and use it in every '
            'head.')
