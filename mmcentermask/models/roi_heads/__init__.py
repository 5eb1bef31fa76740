from . import mask_heads, roi_extractors
from .centermask_roi_head import CenterMaskRoIHead
from .mask_heads import *  # noqa: F401,F403
from .roi_extractors import *  # noqa: F401,F403

__all__ = (['CenterMaskRoIHead'] + mask_heads.__all__ + roi_extractors.__all__)
