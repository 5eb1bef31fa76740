"""pq_stat_single_image against MMDetection's copy of panopticapi's
per-image loop (``pq_compute_single_core``, run with our ``PQStat`` and
``rgb2id`` in place of panopticapi's) on perturbed panoptic shapes scenes:
shifted, relabelled and merged predictions, VOID pixels and crowd regions."""
import cv2
import numpy as np
import pytest
from mmdet.evaluation.functional import panoptic_utils

from mmcentermask.datasets import make_panoptic_image
from mmcentermask.evaluation.functional import (PQStat, id2rgb,
                                                pq_stat_single_image, rgb2id)


def perturbed_scene(seed: int):
    """A ground truth (with VOID and a crowd) and a prediction of it."""
    rng = np.random.default_rng(seed)
    _, gt, segments = make_panoptic_image(rng, 80, 96, 6)
    gt[rng.random(gt.shape) < 0.05] = 0  # scattered VOID pixels
    gt[:, :4] = 0  # a VOID border
    things = [s for s in segments if s['category_id'] <= 3]
    if things:
        things[0]['iscrowd'] = 1
    gt_segments = [s for s in segments if (gt == s['id']).any()]
    pred = np.roll(gt, tuple(rng.integers(-2, 3, 2)), axis=(0, 1))
    pred[gt == 0] = 1  # VOID predicted as the first segment
    pred_segments = []
    for s in gt_segments:
        category = s['category_id']
        if rng.random() < 0.2:  # a wrong class
            category = int(rng.integers(1, 7))
        pred_segments.append(dict(id=s['id'], category_id=category))
    if len(gt_segments) > 3 and rng.random() < 0.5:  # two segments merged
        pred[pred == gt_segments[-1]['id']] = gt_segments[-2]['id']
    present = set(np.unique(pred).tolist())
    pred_segments = [s for s in pred_segments if s['id'] in present]
    return gt, gt_segments, pred, pred_segments


def mmdet_pq_stat(tmp_path, gt, gt_segments, pred, pred_segments):
    for name, ids in (('gt', gt), ('pred', pred)):
        (tmp_path / name).mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / name / 'a.png'), id2rgb(ids)[..., ::-1])
    gt_ann = dict(
        image_id=1,
        file_name='a.png',
        segments_info=[
            dict(s, area=int((gt == s['id']).sum())) for s in gt_segments
        ])
    pred_ann = dict(
        image_id=1,
        file_name='a.png',
        segments_info=[dict(s) for s in pred_segments])
    categories = {i: dict(id=i, isthing=int(i <= 3)) for i in range(1, 7)}
    return panoptic_utils.pq_compute_single_core(0, [(gt_ann, pred_ann)],
                                                 str(tmp_path / 'gt'),
                                                 str(tmp_path / 'pred'),
                                                 categories)


@pytest.mark.parametrize('seed', range(8))
def test_same_statistics_as_panopticapis_loop(seed, tmp_path, monkeypatch):
    monkeypatch.setattr(panoptic_utils, 'PQStat', PQStat)
    monkeypatch.setattr(panoptic_utils, 'rgb2id', rgb2id)
    scene = perturbed_scene(seed)
    ours = pq_stat_single_image(*scene)
    theirs = mmdet_pq_stat(tmp_path, *scene)
    assert set(ours.per_category) == set(theirs.per_category)
    for category, stat in theirs.per_category.items():
        mine = ours[category]
        assert (mine.tp, mine.fp, mine.fn) == (stat.tp, stat.fp, stat.fn)
        assert mine.iou == pytest.approx(stat.iou, rel=1e-12)
