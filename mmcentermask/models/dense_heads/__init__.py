from .centermask_fcos_head import CenterMaskFCOSHead, CenterMaskGIoULoss

__all__ = ['CenterMaskFCOSHead', 'CenterMaskGIoULoss']
