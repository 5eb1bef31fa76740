"""ThresholdedHeuristicFusionHead on hand-made cases with a known panoptic
map: score threshold, overlap rule, stuff area limit, unlabeled "things"
pixels, settings checked at build time."""
import pytest
import torch
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.registry import MODELS
from mmengine.structures import InstanceData

import mmcentermask  # noqa: F401 (registers the head)

NUM_THINGS, NUM_STUFF = 3, 2
VOID = NUM_THINGS + NUM_STUFF
SETTINGS = dict(score_thr=0.5, mask_overlap=0.5, stuff_area_limit=10)


def build(**changes):
    return MODELS.build(
        dict(
            type='ThresholdedHeuristicFusionHead',
            num_things_classes=NUM_THINGS,
            num_stuff_classes=NUM_STUFF,
            test_cfg=dict(SETTINGS, **changes)))


def box_mask(x1, y1, x2, y2, size=10):
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[y1:y2, x1:x2] = True
    return mask


def instances(masks, scores, labels):
    return InstanceData(
        bboxes=torch.zeros(len(masks), 4),
        masks=torch.stack(masks),
        scores=torch.tensor(scores),
        labels=torch.tensor(labels))


def semantic(stuff_rows, size=10):
    """Logits (S + 1, size, size): "things" everywhere except the rows of
    each stuff class."""
    logits = torch.zeros(NUM_STUFF + 1, size, size)
    logits[NUM_STUFF] = 1.0
    for stuff, (start, stop) in stuff_rows.items():
        logits[stuff, start:stop] = 2.0
    return logits


def test_known_panoptic_map():
    head = build()
    results = instances(
        [
            box_mask(0, 0, 4, 4),  # A, 16 px, score 0.9
            box_mask(2, 2, 6, 6),  # B overlaps A by 4 / 16: kept, 12 px
            box_mask(0, 0, 3, 3),  # C inside A (9 / 9 covered): skipped
            box_mask(6, 0, 10, 4),  # D below the score threshold: left out
        ],
        [0.9, 0.8, 0.7, 0.4],
        [1, 2, 0, 1])
    # stuff 0 on rows 6-7 and stuff 1 on rows 8-9 (20 px each, >= 10);
    # "things" elsewhere: unlabeled where no instance covers it
    sem = semantic({0: (6, 8), 1: (8, 10)})
    pan = head.predict([results], [sem])[0].sem_seg[0]
    expected = torch.full((10, 10), VOID, dtype=torch.int32)
    expected[6:8] = NUM_THINGS + 0
    expected[8:10] = NUM_THINGS + 1
    expected[2:6, 2:6] = 2 + 2 * INSTANCE_OFFSET
    expected[0:4, 0:4] = 1 + 1 * INSTANCE_OFFSET
    assert torch.equal(pan, expected)


def test_score_threshold_is_inclusive():
    head = build(score_thr=0.8)
    results = instances([box_mask(0, 0, 5, 5)], [0.8], [0])
    pan = head.predict([results], [semantic({})])[0].sem_seg[0]
    assert int((pan == INSTANCE_OFFSET).sum()) == 25


def test_small_stuff_region_is_unlabeled():
    head = build(stuff_area_limit=21)
    pan = head.predict([instances([box_mask(0, 0, 1, 1)], [0.1], [0])],
                       [semantic({
                           0: (0, 2),
                           1: (5, 8)
                       })])[0].sem_seg[0]
    assert int((pan == NUM_THINGS).sum()) == 0  # 20 px < 21
    assert int((pan == NUM_THINGS + 1).sum()) == 30
    assert int((pan == VOID).sum()) == 70


@pytest.mark.parametrize('key, value', [('score_thr', None),
                                        ('mask_overlap', -0.1),
                                        ('stuff_area_limit', 'big')])
def test_bad_setting_is_named(key, value):
    with pytest.raises(ValueError, match=f'test_cfg.panoptic.{key}'):
        build(**{key: value})
