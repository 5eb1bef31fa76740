from . import panoptic_fusion_heads
from .panoptic_fusion_heads import *  # noqa: F401,F403
from .sem_seg_fpn_head import SemSegFPNHead

__all__ = ['SemSegFPNHead'] + panoptic_fusion_heads.__all__
