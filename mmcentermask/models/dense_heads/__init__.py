from .centermask_fcos_head import CenterMaskFCOSHead
from .centermask_point_head import CenterMaskPointHead

__all__ = ['CenterMaskFCOSHead', 'CenterMaskPointHead']
