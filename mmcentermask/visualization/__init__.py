from .bounded_det_local_visualizer import BoundedDetLocalVisualizer

__all__ = ['BoundedDetLocalVisualizer']
