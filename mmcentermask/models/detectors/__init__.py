from .centermask import CenterMask
from .point_centermask import PointCenterMask

__all__ = ['CenterMask', 'PointCenterMask']
from .panoptic_centermask import PanopticCenterMask

__all__ += ['PanopticCenterMask']
