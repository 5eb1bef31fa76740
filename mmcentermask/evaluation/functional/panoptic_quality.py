"""Panoptic quality (PQ, SQ, RQ) of Kirillov et al. 2019, without panopticapi.

The COCO panoptic definition, as ``panopticapi/evaluation.py`` computes it:

* a map holds one segment id per pixel; id 0 (``VOID``) is unlabelled;
* a predicted and a ground-truth segment of the same category match when
  their IoU is > 0.5 (matches are then unique); the union leaves out the
  predicted pixels that are VOID in the ground truth;
* ground-truth crowd segments (``iscrowd=1``) never match and are no false
  negatives;
* an unmatched prediction is no false positive when more than half of its
  pixels are VOID in the ground truth or lie in the crowd segment of its
  category (panopticapi keeps one crowd segment per category and image: the
  last one listed);
* per category ``PQ = sum(IoU of matches) / (TP + FP / 2 + FN / 2)``,
  ``SQ = sum(IoU) / TP``, ``RQ = TP / (TP + FP / 2 + FN / 2)``; averages run
  over the categories with ``TP + FP + FN > 0``.

One difference: segment areas are counted in the maps, for the ground truth
too (panopticapi takes the ground truth's ``area`` from its JSON, the same
number for a consistent annotation).
"""
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

VOID = 0
# Pairs (gt id, pred id) are coded as gt * OFFSET + pred; ids are < 256 ** 3.
OFFSET = 256 * 256 * 256
IOU_THRESHOLD = 0.5


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    """Segment ids of a COCO panoptic PNG: ``R + 256 G + 256 ** 2 B``.

    Args:
        rgb (np.ndarray): (H, W, 3) image in RGB channel order.

    Returns:
        np.ndarray: (H, W) int64 ids.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f'rgb2id: expected an (H, W, 3) RGB image, got shape '
                         f'{rgb.shape}; read the panoptic PNG in colour.')
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """The inverse of :func:`rgb2id`: (H, W) ids -> (H, W, 3) uint8 RGB."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.min(initial=0) < 0 or ids.max(initial=0) >= OFFSET:
        raise ValueError(f'id2rgb: segment ids must lie in [0, {OFFSET}), got '
                         f'[{ids.min()}, {ids.max()}].')
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536],
                    axis=-1).astype(np.uint8)


@dataclass
class CategoryStat:
    """Sums of one category: IoU of the matches, TP, FP and FN counts."""
    iou: float = 0.0
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __iadd__(self, other: 'CategoryStat') -> 'CategoryStat':
        self.iou += other.iou
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        return self

    def quality(self) -> Dict[str, float]:
        """``{'pq', 'sq', 'rq'}`` of this category (zeros when empty)."""
        denominator = self.tp + 0.5 * self.fp + 0.5 * self.fn
        if denominator == 0:
            return dict(pq=0.0, sq=0.0, rq=0.0)
        return dict(
            pq=self.iou / denominator,
            sq=self.iou / self.tp if self.tp else 0.0,
            rq=self.tp / denominator)


class PQStat:
    """Per-category :class:`CategoryStat`, summed over images with ``+=``."""

    def __init__(self) -> None:
        self.per_category: Dict[int, CategoryStat] = defaultdict(CategoryStat)

    def __getitem__(self, category_id: int) -> CategoryStat:
        return self.per_category[category_id]

    def __iadd__(self, other: 'PQStat') -> 'PQStat':
        for category_id, stat in other.per_category.items():
            self.per_category[category_id] += stat
        return self

    def pq_average(
        self, categories: Mapping[int, Mapping], isthing: Optional[bool]
    ) -> Tuple[Dict[str, float], Dict[int, Dict[str, float]]]:
        """Average PQ, SQ, RQ over categories, as panopticapi.

        Args:
            categories (Mapping[int, Mapping]): Category id -> info with
                ``isthing`` (1 or 0).
            isthing (bool, optional): Only things (True), only stuff
                (False) or all (None).

        Returns:
            tuple: ``({'pq', 'sq', 'rq', 'n'}, {category_id: {'pq', 'sq',
            'rq'}})``; ``n`` counts the categories with TP + FP + FN > 0,
            and the averages are 0 when ``n`` is 0 (panopticapi divides by
            zero there).
        """
        totals = dict(pq=0.0, sq=0.0, rq=0.0)
        per_category, n = {}, 0
        for category_id, info in categories.items():
            if isthing is not None and (info['isthing'] == 1) != isthing:
                continue
            stat = self.per_category.get(category_id, CategoryStat())
            per_category[category_id] = stat.quality()
            if stat.tp + stat.fp + stat.fn == 0:
                continue
            n += 1
            for key in totals:
                totals[key] += per_category[category_id][key]
        average = {
            key: value / n if n else 0.0
            for key, value in totals.items()
        }
        average['n'] = n
        return average, per_category


def segment_areas(ids: np.ndarray, segments: Mapping[int, Mapping],
                  where: str) -> Dict[int, int]:
    """Pixel count of every listed segment; every non-VOID id must be listed.

    Args:
        ids (np.ndarray): (H, W) segment ids.
        segments (Mapping[int, Mapping]): Segment id -> info.
        where (str): The map's name for the error message (e.g. its file).

    Returns:
        dict: Segment id -> area in pixels (0 for a listed, absent id).
    """
    values, counts = np.unique(ids, return_counts=True)
    unlisted = [int(v) for v in values if v != VOID and v not in segments]
    if unlisted:
        raise ValueError(
            f'{where}: segment ids {unlisted} are in the map but not in its '
            f'segments_info ({sorted(segments)}); every non-zero id of the '
            'PNG (R + 256 G + 256^2 B) needs a segments_info entry, or set '
            'those pixels to 0 (VOID).')
    areas = {segment_id: 0 for segment_id in segments}
    areas.update({int(v): int(c) for v, c in zip(values, counts) if v != VOID})
    return areas


def pq_stat_single_image(gt_ids: np.ndarray,
                         gt_segments: Sequence[Mapping],
                         pred_ids: np.ndarray,
                         pred_segments: Sequence[Mapping],
                         image: str = 'image') -> PQStat:
    """TP / FP / FN and matched IoU of one image (panopticapi's loop body).

    Args:
        gt_ids (np.ndarray): (H, W) ground-truth segment ids, 0 = VOID.
        gt_segments (Sequence[Mapping]): Ground-truth ``segments_info``:
            ``id``, ``category_id``, ``iscrowd`` (0 when absent).
        pred_ids (np.ndarray): (H, W) predicted segment ids, 0 = VOID.
        pred_segments (Sequence[Mapping]): Predicted ``segments_info``:
            ``id``, ``category_id``.
        image (str): Name of the image in error messages.

    Returns:
        PQStat: This image's statistics, keyed by category id.
    """
    if gt_ids.shape != pred_ids.shape:
        raise ValueError(
            f'{image}: the predicted panoptic map is {pred_ids.shape[:2]} '
            f'but the ground truth is {gt_ids.shape[:2]}; predictions must '
            'be in the original image frame (rescale=True).')
    gt_segms = {int(s['id']): s for s in gt_segments}
    pred_segms = {int(s['id']): s for s in pred_segments}
    gt_area = segment_areas(gt_ids, gt_segms, f'{image} (ground truth)')
    pred_area = segment_areas(pred_ids, pred_segms, f'{image} (prediction)')
    missing = [i for i, area in pred_area.items() if area == 0]
    if missing:
        raise ValueError(f'{image}: predicted segments {missing} are listed '
                         'but have no pixel in the predicted map.')

    pairs, counts = np.unique(
        gt_ids.astype(np.uint64) * OFFSET + pred_ids.astype(np.uint64),
        return_counts=True)
    overlap = {
        (int(p // OFFSET), int(p % OFFSET)): int(c)
        for p, c in zip(pairs, counts)
    }

    stat = PQStat()
    gt_matched, pred_matched = set(), set()
    for (gt_id, pred_id), intersection in overlap.items():
        if gt_id not in gt_segms or pred_id not in pred_segms:
            continue
        gt, pred = gt_segms[gt_id], pred_segms[pred_id]
        if gt.get('iscrowd', 0) == 1 or (gt['category_id']
                                         != pred['category_id']):
            continue
        union = (
            pred_area[pred_id] + gt_area[gt_id] - intersection - overlap.get(
                (VOID, pred_id), 0))
        iou = intersection / union
        if iou > IOU_THRESHOLD:
            stat[gt['category_id']].tp += 1
            stat[gt['category_id']].iou += iou
            gt_matched.add(gt_id)
            pred_matched.add(pred_id)

    crowd_of_category = {}
    for gt_id, gt in gt_segms.items():
        if gt_id in gt_matched:
            continue
        if gt.get('iscrowd', 0) == 1:
            crowd_of_category[gt['category_id']] = gt_id
            continue
        stat[gt['category_id']].fn += 1

    for pred_id, pred in pred_segms.items():
        if pred_id in pred_matched:
            continue
        ignored = overlap.get((VOID, pred_id), 0)
        if pred['category_id'] in crowd_of_category:
            ignored += overlap.get(
                (crowd_of_category[pred['category_id']], pred_id), 0)
        if ignored / pred_area[pred_id] > 0.5:
            continue
        stat[pred['category_id']].fp += 1
    return stat
