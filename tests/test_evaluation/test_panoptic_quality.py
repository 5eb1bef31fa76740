"""PQ / SQ / RQ on hand-made panoptic maps with known answers."""
import numpy as np
import pytest

from mmcentermask.evaluation.functional import (PQStat, id2rgb,
                                                pq_stat_single_image, rgb2id)

THING, STUFF = 1, 2
CATEGORIES = {THING: dict(isthing=1), STUFF: dict(isthing=0)}


def scene():
    """A 10x10 map: stuff segment 1 everywhere, thing segment 2 in a 4x4
    square at rows/cols 2-5 (16 pixels)."""
    ids = np.ones((10, 10), np.int64)
    ids[2:6, 2:6] = 2
    segments = [dict(id=1, category_id=STUFF), dict(id=2, category_id=THING)]
    return ids, segments


def average(stat: PQStat, isthing=None) -> dict:
    return stat.pq_average(CATEGORIES, isthing=isthing)[0]


def test_rgb2id_id2rgb_round_trip():
    ids = np.array([[0, 1, 255], [256, 65536, 256**3 - 1]])
    rgb = id2rgb(ids)
    assert rgb[1, 0].tolist() == [0, 1, 0]  # 256 = G 1
    assert rgb[1, 1].tolist() == [0, 0, 1]  # 65536 = B 1
    assert (rgb2id(rgb) == ids).all()
    with pytest.raises(ValueError, match='RGB image'):
        rgb2id(ids)


def test_perfect_prediction():
    ids, segments = scene()
    stat = pq_stat_single_image(ids, segments, ids.copy(), segments)
    assert average(stat) == dict(pq=1.0, sq=1.0, rq=1.0, n=2)
    assert (stat[THING].tp, stat[THING].fp, stat[THING].fn) == (1, 0, 0)


def test_missed_segment_is_a_false_negative():
    gt, segments = scene()
    pred = np.ones_like(gt)  # the thing predicted as stuff
    stat = pq_stat_single_image(gt, segments, pred, segments[:1])
    assert (stat[THING].tp, stat[THING].fn) == (0, 1)
    # Stuff: IoU = 84 / 100 matched (> 0.5); thing: PQ 0.
    assert stat[STUFF].tp == 1
    assert stat[STUFF].iou == pytest.approx(0.84)
    things = average(stat, isthing=True)
    assert things == dict(pq=0.0, sq=0.0, rq=0.0, n=1)
    assert average(stat)['pq'] == pytest.approx(0.42)


def test_false_positive_and_iou_threshold():
    gt, segments = scene()
    pred = gt.copy()
    pred[7:9, 7:9] = 3  # a thing where the ground truth has stuff
    pred_segments = segments + [dict(id=3, category_id=THING)]
    stat = pq_stat_single_image(gt, segments, pred, pred_segments)
    assert (stat[THING].tp, stat[THING].fp, stat[THING].fn) == (1, 1, 0)
    # Thing: PQ = 1 / (1 + 0.5), SQ = 1, RQ = 2 / 3.
    things = average(stat, isthing=True)
    assert things['pq'] == pytest.approx(2 / 3)
    assert things['sq'] == pytest.approx(1.0)
    assert stuff_iou(stat) == pytest.approx(80 / 84)


def stuff_iou(stat: PQStat) -> float:
    return stat[STUFF].iou / stat[STUFF].tp


def test_iou_exactly_half_does_not_match():
    gt, segments = scene()
    pred = gt.copy()
    pred[2:6, 4:6] = 1  # the predicted thing covers 8 of 16 pixels
    stat = pq_stat_single_image(gt, segments, pred, segments)
    # IoU 8 / 16 = 0.5 is no match: one FN and one FP.
    assert (stat[THING].tp, stat[THING].fp, stat[THING].fn) == (0, 1, 1)


def test_void_pixels_leave_the_union():
    gt, segments = scene()
    gt[2:6, 6:8] = 0  # VOID right of the thing (8 pixels)
    pred = gt.copy()
    pred[2:6, 6:8] = 2  # the prediction spills into VOID
    stat = pq_stat_single_image(gt, segments, pred, segments)
    # 16 / (24 + 16 - 16 - 8) = 1: VOID pixels are not counted.
    assert stat[THING].iou == pytest.approx(1.0)
    assert stat[STUFF].iou == pytest.approx(1.0)


def test_prediction_mostly_on_void_is_no_false_positive():
    gt, segments = scene()
    gt[7:10, 7:10] = 0
    pred = gt.copy()
    pred[7:10, 6:10] = 3  # 9 of its 12 pixels are VOID
    stat = pq_stat_single_image(gt, segments, pred,
                                segments + [dict(id=3, category_id=THING)])
    assert stat[THING].fp == 0


def test_crowd_region():
    gt, segments = scene()
    gt[7:10, 0:4] = 4  # a crowd of things
    segments = segments + [dict(id=4, category_id=THING, iscrowd=1)]
    pred = gt.copy()
    pred[7:10, 0:4] = 5  # a thing predicted exactly on the crowd
    pred_segments = [
        dict(id=1, category_id=STUFF),
        dict(id=2, category_id=THING),
        dict(id=5, category_id=THING)
    ]
    stat = pq_stat_single_image(gt, segments, pred, pred_segments)
    # The crowd neither matches nor is missed; the prediction on it is
    # ignored: things stay perfect.
    assert (stat[THING].tp, stat[THING].fp, stat[THING].fn) == (1, 0, 0)
    # A stuff prediction on the crowd is a false positive: the crowd only
    # excuses predictions of its own category.
    pred_segments[2] = dict(id=5, category_id=STUFF)
    stat = pq_stat_single_image(gt, segments, pred, pred_segments)
    assert stat[STUFF].fp == 1


def test_stats_add_over_images_and_empty_categories_are_left_out():
    ids, segments = scene()
    total = PQStat()
    total += pq_stat_single_image(ids, segments, ids, segments)
    stuff_only = np.ones_like(ids)
    total += pq_stat_single_image(stuff_only, segments[:1], stuff_only,
                                  segments[:1])
    assert total[THING].tp == 1 and total[STUFF].tp == 2
    categories = {**CATEGORIES, 3: dict(isthing=1)}  # never seen
    result, per_category = total.pq_average(categories, isthing=True)
    assert result['n'] == 1 and per_category[3] == dict(pq=0, sq=0, rq=0)
    assert PQStat().pq_average(categories, None)[0]['n'] == 0


def test_inconsistent_maps_are_named_errors():
    ids, segments = scene()
    with pytest.raises(ValueError, match=r'my\.png \(ground truth\).*\[2\]'):
        pq_stat_single_image(ids, segments[:1], ids, segments, 'my.png')
    with pytest.raises(ValueError, match='no pixel'):
        pq_stat_single_image(ids, segments, ids,
                             segments + [dict(id=9, category_id=THING)])
    with pytest.raises(ValueError, match='original image frame'):
        pq_stat_single_image(ids, segments, ids[:5], segments)
