from .centermask_tta import CenterMaskTTAModel

__all__ = ['CenterMaskTTAModel']
