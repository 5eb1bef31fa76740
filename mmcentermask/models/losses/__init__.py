from .centermask_giou_loss import CenterMaskGIoULoss, smoothed_giou_loss

__all__ = ['CenterMaskGIoULoss', 'smoothed_giou_loss']
