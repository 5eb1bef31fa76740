from .centermask_fcos_head import CenterMaskFCOSHead
from .centermask_fcos_point_head import CenterMaskFCOSPointHead
from .centermask_point_head import CenterMaskPointHead

__all__ = [
    'CenterMaskFCOSHead', 'CenterMaskFCOSPointHead', 'CenterMaskPointHead'
]
