from .shapes import CLASSES, make_image, make_split

__all__ = ['CLASSES', 'make_image', 'make_split']
