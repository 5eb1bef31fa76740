from .sparse_roi_align import SparseRoIAlign

__all__ = ['SparseRoIAlign']
