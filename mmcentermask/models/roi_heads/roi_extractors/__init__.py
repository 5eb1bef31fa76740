from .adaptive_level_roi_extractor import AdaptiveLevelRoIExtractor

__all__ = ['AdaptiveLevelRoIExtractor']
