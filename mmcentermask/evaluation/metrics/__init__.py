from .coco_panoptic_quality_metric import CocoPanopticQualityMetric

__all__ = ['CocoPanopticQualityMetric']
