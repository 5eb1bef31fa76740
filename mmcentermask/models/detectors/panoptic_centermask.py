"""Panoptic-CenterMask: CenterMask inside Panoptic FPN (centermask2's
``PanopticFPN`` configs ``panoptic_centermask_*``)."""
import copy
from typing import Optional, Tuple

from mmdet.registry import MODELS
from mmdet.structures import OptSampleList, SampleList
from mmdet.utils import ConfigType
from torch import Tensor

from .centermask import CenterMask


@MODELS.register_module()
class PanopticCenterMask(CenterMask):
    """CenterMask with a semantic FPN head and panoptic fusion.

    Backbone -> FPN (P2-P7) -> the CenterMask instance part unchanged on
    P3-P7 (FCOS head ``bbox_head``, mask branch ``roi_head`` on P3-P5) and
    the semantic head on P2-P5 (``semantic_head``, e.g.
    :class:`SemSegFPNHead`); at test time ``panoptic_fusion_head`` (e.g.
    :class:`ThresholdedHeuristicFusionHead`) combines the instances with
    the semantic argmax.

    Args:
        semantic_head (dict): Semantic head config; it reads the FPN levels
            from its ``start_level`` (0 = P2) to ``end_level``.
        panoptic_fusion_head (dict): Fusion head config; its test settings
            are ``test_cfg.panoptic``.
        num_stuff_classes (int): Number of stuff classes, given once here
            (with ``num_classes``, the thing classes) and passed to the
            semantic and fusion heads; a head config stating another value
            is an error.
        num_semantic_only_levels (int): Leading FPN levels that the FCOS
            head does not read (1: P2); the semantic head reads them, the
            mask branch too with ``num_mask_only_levels`` (at most this).
        **kwargs: :class:`CenterMask` arguments (``backbone``, ``neck`` with
            ``num_outs`` = 5 + ``num_semantic_only_levels``, ``bbox_head``,
            ``roi_head``, ``train_cfg``, ``test_cfg`` with ``fcos``, ``rcnn``
            and ``panoptic``, ``num_classes``, ...).
    """

    def __init__(self,
                 semantic_head: ConfigType,
                 panoptic_fusion_head: ConfigType,
                 num_stuff_classes: int,
                 num_semantic_only_levels: int = 1,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        num_things = self.bbox_head.num_classes
        if not isinstance(num_stuff_classes, int) or num_stuff_classes < 0:
            raise ValueError(
                f'PanopticCenterMask(num_stuff_classes={num_stuff_classes!r})'
                ': it must be the number of stuff classes of the dataset '
                '(53 for COCO panoptic).')
        semantic_head = copy.deepcopy(semantic_head)
        panoptic_fusion_head = copy.deepcopy(panoptic_fusion_head)
        inject_class_counts(
            num_things,
            num_stuff_classes,
            semantic_head=semantic_head,
            panoptic_fusion_head=panoptic_fusion_head)
        self.semantic_head = MODELS.build(semantic_head)
        panoptic_fusion_head.update(test_cfg=self.test_cfg.get('panoptic'))
        self.panoptic_fusion_head = MODELS.build(panoptic_fusion_head)
        self.num_stuff_classes = num_stuff_classes
        if self.num_mask_only_levels > num_semantic_only_levels:
            raise ValueError(
                f'num_mask_only_levels={self.num_mask_only_levels} > '
                f'num_semantic_only_levels={num_semantic_only_levels}: the '
                'mask branch can read only FPN levels the neck outputs; '
                'make num_mask_only_levels at most num_semantic_only_levels.')
        self.num_semantic_only_levels = num_semantic_only_levels

    def fcos_feats(self, x: Tuple[Tensor]) -> Tuple[Tensor]:
        """The FPN levels of the FCOS head (P3-P7) out of all (P2-P7)."""
        return x[self.num_semantic_only_levels:]

    def mask_feats(self, x: Tuple[Tensor]) -> Tuple[Tensor]:
        """The FPN levels the mask branch reads from (P3, or P2 with
        ``num_mask_only_levels=1``) out of all (P2-P7)."""
        return x[self.num_semantic_only_levels - self.num_mask_only_levels:]

    def loss(self, batch_inputs: Tensor,
             batch_data_samples: SampleList) -> dict:
        """CenterMask losses plus the semantic loss.

        Args:
            batch_inputs (Tensor): Images (B, 3, H, W), normalised, padded.
            batch_data_samples (list[DetDataSample]): GT instances (things),
                ``gt_sem_seg`` (padded with 255) and image metas.

        Returns:
            dict[str, Tensor]: ``loss_cls``, ``loss_bbox``,
            ``loss_centerness``, ``loss_mask``, ``loss_mask_iou``,
            ``loss_seg``.
        """
        x = self.extract_feat(batch_inputs)
        losses = self.instance_loss(x, batch_data_samples)
        losses.update(self.semantic_head.loss(x, batch_data_samples))
        return losses

    def predict(self,
                batch_inputs: Tensor,
                batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """Instances, semantic logits and the panoptic map.

        Args:
            batch_inputs (Tensor): Images (B, 3, H, W), normalised, padded.
            batch_data_samples (list[DetDataSample]): Image metas.
            rescale (bool): Original image frame (True) or the resized one.

        Returns:
            list[DetDataSample]: ``pred_instances`` (as :class:`CenterMask`)
            and ``pred_panoptic_seg.sem_seg`` (1, H, W) int32 in
            MMDetection's panoptic format (``label + instance_id *
            INSTANCE_OFFSET`` for things, ``num_things + stuff index`` for
            stuff, ``num_things + num_stuff`` unlabeled).
        """
        x = self.extract_feat(batch_inputs)
        instances = self.instance_predict(x, batch_data_samples, rescale)
        seg_preds = self.semantic_head.predict(
            x, [s.metainfo for s in batch_data_samples], rescale=rescale)
        panoptic = self.panoptic_fusion_head.predict(instances, seg_preds)
        for sample, results, pan in zip(batch_data_samples, instances,
                                        panoptic):
            sample.pred_instances = results
            sample.pred_panoptic_seg = pan
        return batch_data_samples

    def _forward(self,
                 batch_inputs: Tensor,
                 batch_data_samples: OptSampleList = None) -> Tuple:
        """Tensor mode: :class:`CenterMask`'s outputs on P3-P7, then the
        semantic logits at stride 4, (B, num_stuff + 1, H / 4, W / 4)."""
        x = self.extract_feat(batch_inputs)
        return (self.instance_forward(x, batch_inputs, batch_data_samples) +
                (self.semantic_head(x)['seg_preds'], ))


def inject_class_counts(num_things: int, num_stuff: int,
                        **head_cfgs: Optional[dict]) -> None:
    """Set ``num_things_classes`` and ``num_stuff_classes`` in every given
    head config (in place).

    Raises:
        ValueError: A head config already states another value.
    """
    counts = dict(num_things_classes=num_things, num_stuff_classes=num_stuff)
    for name, cfg in head_cfgs.items():
        for key, value in counts.items():
            stated = cfg.get(key, value)
            if stated != value:
                raise ValueError(
                    f'PanopticCenterMask has {key}={value} (from num_classes'
                    f' / num_stuff_classes) but its {name} config says '
                    f'{key}={stated}; remove {key} from the head config or '
                    'make them equal.')
            cfg[key] = value
