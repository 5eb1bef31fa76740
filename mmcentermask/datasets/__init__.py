from .checked_coco import CheckedCocoDataset
from .shapes import CLASSES, make_image, make_split

__all__ = ['CLASSES', 'CheckedCocoDataset', 'make_image', 'make_split']
