from .panoptic_quality import (OFFSET, VOID, CategoryStat, PQStat, id2rgb,
                               pq_stat_single_image, rgb2id, segment_areas)

__all__ = [
    'OFFSET', 'VOID', 'CategoryStat', 'PQStat', 'id2rgb',
    'pq_stat_single_image', 'rgb2id', 'segment_areas'
]
