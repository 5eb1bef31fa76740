"""GIoU loss of centermask2 / AdelaiDet FCOS: IoU smoothed by +1."""
from typing import Optional

import torch
from mmdet.models.losses.utils import weighted_loss
from mmdet.registry import MODELS
from torch import Tensor, nn


@weighted_loss
def smoothed_giou_loss(pred: Tensor,
                       target: Tensor,
                       smooth: float = 1.0,
                       enclose_eps: float = 0.0) -> Tensor:
    """GIoU loss with additive IoU smoothing, as in centermask2 / FCOS.

    IoU = (I + smooth) / (U + smooth); GIoU = IoU - (E - U) / (E + enclose_eps)
    with intersection I, union U and enclosing-box area E; loss = 1 - GIoU.

    Args:
        pred (Tensor): Predicted boxes (x1, y1, x2, y2), shape (n, 4).
        target (Tensor): Target boxes (x1, y1, x2, y2), shape (n, 4).
        smooth (float): Added to intersection and union, in the squared
            unit of the boxes.
        enclose_eps (float): Added to the enclosing area.

    Returns:
        Tensor: Loss per box pair, shape (n, ).
    """
    pred_area = (pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1])
    target_area = (target[:, 2] - target[:, 0]) * (target[:, 3] - target[:, 1])
    inter_wh = (torch.min(pred[:, 2:], target[:, 2:]) -
                torch.max(pred[:, :2], target[:, :2])).clamp(min=0)
    inter = inter_wh[:, 0] * inter_wh[:, 1]
    union = target_area + pred_area - inter
    ious = (inter + smooth) / (union + smooth)
    enclose_wh = (
        torch.max(pred[:, 2:], target[:, 2:]) -
        torch.min(pred[:, :2], target[:, :2]))
    enclose = enclose_wh[:, 0] * enclose_wh[:, 1]
    gious = ious - (enclose - union) / (enclose + enclose_eps)
    return 1 - gious


@MODELS.register_module()
class CenterMaskGIoULoss(nn.Module):
    """GIoU loss of centermask2 (``IOULoss('giou')``) on xyxy boxes.

    Unlike mmdet's ``GIoULoss`` the IoU is smoothed, (I + 1) / (U + 1), and
    the enclosing area has no epsilon. :class:`CenterMaskFCOSHead` feeds
    boxes decoded around the origin from (l, t, r, b) distances, so the
    smoothing acts in stride units as in C2 (with ``norm_on_bbox``) or in
    pixels as in MB. For MB use ``enclose_eps=1e-7``.

    Args:
        smooth (float): IoU smoothing term. Defaults to 1.0.
        enclose_eps (float): Epsilon added to the enclosing area.
            Defaults to 0.0.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``.
            Defaults to ``'mean'``.
        loss_weight (float): Weight of the loss. Defaults to 1.0.
    """

    def __init__(self,
                 smooth: float = 1.0,
                 enclose_eps: float = 0.0,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        self.smooth = smooth
        self.enclose_eps = enclose_eps
        self.reduction = reduction
        self.loss_weight = loss_weight

    def forward(self,
                pred: Tensor,
                target: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> Tensor:
        """Compute the loss.

        Args:
            pred (Tensor): Predicted boxes (x1, y1, x2, y2), shape (n, 4).
            target (Tensor): Target boxes, shape (n, 4).
            weight (Tensor, optional): Weight per box, shape (n, ).
            avg_factor (float, optional): Divisor of the weighted sum when
                the reduction is ``'mean'``.
            reduction_override (str, optional): Overrides ``reduction``.

        Returns:
            Tensor: The loss, a scalar unless the reduction is ``'none'``.
        """
        if weight is not None and not torch.any(weight > 0):
            return (pred * weight[:, None]).sum()
        reduction = reduction_override or self.reduction
        return self.loss_weight * smoothed_giou_loss(
            pred,
            target,
            weight,
            reduction=reduction,
            avg_factor=avg_factor,
            smooth=self.smooth,
            enclose_eps=self.enclose_eps)
