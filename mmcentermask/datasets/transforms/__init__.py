from .load_coco_panoptic_annotations import LoadCocoPanopticAnnotations
from .random_center_crop_pad_with_mask import (RandomCenterCropPadWithMask,
                                               crop_and_paste_masks)

__all__ = [
    'RandomCenterCropPadWithMask', 'crop_and_paste_masks',
    'LoadCocoPanopticAnnotations'
]
