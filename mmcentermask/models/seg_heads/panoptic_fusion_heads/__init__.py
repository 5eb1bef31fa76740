from .thresholded_heuristic_fusion_head import ThresholdedHeuristicFusionHead

__all__ = ['ThresholdedHeuristicFusionHead']
