"""detectron2's ``SemSegFPNHead`` (the semantic branch of Panoptic FPN, as
centermask2's Panoptic-CenterMask uses it) on top of MMDetection's
``PanopticFPNHead``."""
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.seg_heads import PanopticFPNHead
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.utils import ConfigType
from torch import Tensor, nn

#: the void label of the GT semantic maps (MMDetection's
#: LoadPanopticAnnotations and detectron2's separated format)
IGNORE_INDEX = 255


@MODELS.register_module()
class SemSegFPNHead(PanopticFPNHead):
    """Semantic FPN head with detectron2's loss, output frame and init.

    The layers are MMDetection's ``PanopticFPNHead`` (the same as
    detectron2's ``SemSegFPNHead``: per level ``max(1, level - 2)`` 3x3
    conv + GN + ReLU blocks, each followed by a x2 bilinear upsampling
    until stride 4, summed, then a 1x1 predictor). The channel layout is
    MMDetection's: the stuff classes ``0 .. num_stuff_classes - 1`` first,
    then one channel for all "things" (detectron2 has "things" at 0 and the
    stuff at 1..53; the converter reorders the predictor).

    Differences from ``PanopticFPNHead`` (each is detectron2's behaviour):

    - ``loss``: the logits are upsampled (bilinear, x4) to the padded input
      and the cross-entropy is taken against the full-resolution GT, padded
      with the ignore label 255 where it is smaller; ``PanopticFPNHead``
      downsamples the GT (nearest) to stride 4 instead. With
      ``avg_non_ignore=True`` in ``loss_seg`` the mean is over the
      non-ignored pixels, as ``F.cross_entropy``.
    - ``init_weights``: the predictor gets detectron2's MSRA fill (Kaiming
      normal, fan-out, bias 0) instead of N(0, 0.01).
    - ``predict(rescale=False)``: the logits are cropped to ``img_shape``,
      the frame of the instance masks, so that the fusion head can combine
      both (``PanopticFPNHead`` keeps the padded frame).

    Args:
        loss_seg (dict): Loss config. Defaults to detectron2's: cross-entropy
            ignoring 255, mean over the non-ignored pixels, weight 0.5.
        **kwargs: ``PanopticFPNHead`` arguments (``num_things_classes``,
            ``num_stuff_classes``, ``in_channels``, ``inner_channels``,
            ``start_level``, ``end_level``, ``norm_cfg``, ...).
    """

    def __init__(self,
                 loss_seg: ConfigType = dict(
                     type='CrossEntropyLoss',
                     ignore_index=IGNORE_INDEX,
                     avg_non_ignore=True,
                     loss_weight=0.5),
                 **kwargs) -> None:
        super().__init__(loss_seg=loss_seg, **kwargs)

    def init_weights(self) -> None:
        """MMDetection's init, then detectron2's MSRA fill of the
        predictor."""
        super().init_weights()
        nn.init.kaiming_normal_(
            self.conv_logits.weight, mode='fan_out', nonlinearity='relu')
        nn.init.zeros_(self.conv_logits.bias)

    def loss(self, x: Tuple[Tensor],
             batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Cross-entropy of the upsampled logits against the GT.

        Args:
            x (tuple[Tensor]): FPN levels, each (B, C, H_l, W_l).
            batch_data_samples (list[DetDataSample]): ``gt_sem_seg.sem_seg``
                (1, H, W) per image, padded like the input: thing classes
                ``0 .. num_things - 1``, stuff classes after them, 255 void.

        Returns:
            dict[str, Tensor]: ``loss_seg``.
        """
        seg_preds = F.interpolate(
            self(x)['seg_preds'].float(),
            scale_factor=1 / self.seg_rescale_factor,
            mode='bilinear',
            align_corners=False)
        targets = stack_gt_sem_seg(batch_data_samples)
        targets = self._set_things_to_void(targets).long()
        targets = pad_with_ignore(targets, seg_preds.shape[-2:])
        loss_seg = self.loss_seg(
            seg_preds.permute(0, 2, 3, 1).reshape(-1, self.num_classes),
            targets.reshape(-1))
        return dict(loss_seg=loss_seg)

    def predict(self,
                x: Tuple[Tensor],
                batch_img_metas: List[dict],
                rescale: bool = False) -> List[Tensor]:
        """Semantic logits per image, (num_stuff + 1, H, W): at the original
        size (``rescale=True``) or in the network-input frame ``img_shape``
        (``rescale=False``)."""
        seg_preds = super().predict(x, batch_img_metas, rescale)
        if rescale:
            return seg_preds
        return [
            pred[:, :meta['img_shape'][0], :meta['img_shape'][1]]
            for pred, meta in zip(seg_preds, batch_img_metas)
        ]


def pad_with_ignore(targets: Tensor, size: Tuple[int, int]) -> Tensor:
    """GT maps (B, h, w) padded at the bottom / right with
    :data:`IGNORE_INDEX` to ``size`` (the upsampled logits).

    Raises:
        ValueError: The GT is larger than the logits (not the GT of this
            input).
    """
    height, width = targets.shape[-2:]
    pad_h, pad_w = size[0] - height, size[1] - width
    if pad_h < 0 or pad_w < 0:
        raise ValueError(
            f'SemSegFPNHead.loss: GT semantic maps of {height}x{width} px '
            f'are larger than the padded input {size[0]}x{size[1]}; the GT '
            'must be resized with the image (LoadPanopticAnnotations before '
            'the Resize of the pipeline).')
    return F.pad(targets, (0, pad_w, 0, pad_h), value=IGNORE_INDEX)


def stack_gt_sem_seg(batch_data_samples: SampleList) -> Tensor:
    """The GT semantic maps of a batch, (B, H, W).

    Raises:
        ValueError: A sample has no ``gt_sem_seg`` (the pipeline lacks
            ``LoadPanopticAnnotations(with_seg=True)``) or the maps differ in
            size (the data preprocessor lacks ``pad_seg=True``).
    """
    maps = []
    for sample in batch_data_samples:
        if 'gt_sem_seg' not in sample:
            raise ValueError(
                'SemSegFPNHead.loss: a training sample has no gt_sem_seg; '
                "add dict(type='LoadPanopticAnnotations', with_seg=True) to "
                'the training pipeline.')
        maps.append(sample.gt_sem_seg.sem_seg[0])
    shapes = {tuple(m.shape) for m in maps}
    if len(shapes) > 1:
        raise ValueError(
            f'SemSegFPNHead.loss: GT semantic maps of sizes {sorted(shapes)} '
            'in one batch; set pad_seg=True, seg_pad_value=255 in the '
            'data_preprocessor so that they are padded like the images.')
    return torch.stack(maps)
