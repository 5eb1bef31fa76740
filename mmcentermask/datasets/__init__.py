from .checked_coco import CheckedCocoDataset
from .checked_coco_panoptic import CheckedCocoPanopticDataset
from .shapes import (CLASSES, STUFF_CLASSES, make_image, make_panoptic_image,
                     make_panoptic_split, make_split)
from .transforms import *  # noqa: F401,F403
from .transforms import __all__ as _transforms_all

__all__ = [
    'CLASSES', 'CheckedCocoDataset', 'CheckedCocoPanopticDataset',
    'make_image', 'make_split',
    'STUFF_CLASSES', 'make_panoptic_image', 'make_panoptic_split'
] + _transforms_all
