"""CocoPanopticQualityMetric against an independent PQ: hotcoco's
``panoptic.PanopticEval`` (a Rust reimplementation of panopticapi), on small
panoptic sets written as COCO panoptic PNG + JSON: several thing and stuff
classes, VOID pixels, crowd regions, misses, false positives, wrong classes,
predictions on VOID and on crowds, predicted VOID, a class never present."""
import json

import cv2
import numpy as np
import pytest
import torch
# hotcoco is in the ``tests`` extra: imported plainly, so that a missing
# hotcoco fails this module instead of skipping it.
from hotcoco import panoptic as hotcoco_panoptic
from mmdet.evaluation.functional import INSTANCE_OFFSET

from mmcentermask.evaluation import CocoPanopticQualityMetric
from mmcentermask.evaluation.functional import id2rgb

# The file's categories (ids as in a real file: neither 0-based nor dense).
CATEGORIES = [
    dict(id=1, name='person', isthing=1),
    dict(id=3, name='car', isthing=1),
    dict(id=5, name='cat', isthing=1),  # in no image: not averaged
    dict(id=7, name='dog', isthing=1),
    dict(id=10, name='sky', isthing=0),
    dict(id=12, name='grass', isthing=0),
    dict(id=20, name='road', isthing=0),
]
# The model's classes, in another order than the file's ids.
THING_CLASSES = ('dog', 'person', 'car', 'cat')
STUFF_CLASSES = ('road', 'sky', 'grass')
CLASSES = THING_CLASSES + STUFF_CLASSES
CATEGORY_ID = {c['name']: c['id'] for c in CATEGORIES}
NUM_CLASSES = len(CLASSES)  # also the model's VOID label
NUM_DRAWN_THINGS = 3  # the scenes draw dogs, persons and cars
HEIGHT, WIDTH = 48, 64


def ground_truth_scene(rng: np.random.Generator):
    """A ground truth: stuff bands, boxes of things (one crowd), VOID.

    Returns:
        tuple: (H, W) class labels (``NUM_CLASSES`` = VOID), (H, W)
        instance numbers (0 for stuff) and the crowd instances.
    """
    labels = np.empty((HEIGHT, WIDTH), np.int64)
    bands = np.sort(rng.choice(np.arange(8, HEIGHT - 8), 2, replace=False))
    stuff = rng.permutation(len(STUFF_CLASSES))
    for band, (top, bottom) in enumerate(zip((0, *bands), (*bands, HEIGHT))):
        labels[top:bottom] = len(THING_CLASSES) + stuff[band]
    instances = np.zeros((HEIGHT, WIDTH), np.int64)
    for instance in range(1, int(rng.integers(3, 7)) + 1):
        y, x = rng.integers(0, HEIGHT - 8), rng.integers(0, WIDTH - 8)
        h, w = rng.integers(6, 20, 2)
        labels[y:y + h, x:x + w] = rng.integers(NUM_DRAWN_THINGS)
        instances[y:y + h, x:x + w] = instance
    crowd = {int(instances[instances > 0][0])}  # an instance still visible
    labels[:, :3] = NUM_CLASSES  # a VOID border
    labels[rng.random(labels.shape) < 0.03] = NUM_CLASSES  # scattered VOID
    instances[labels == NUM_CLASSES] = 0
    return labels, instances, crowd


def predicted_scene(rng: np.random.Generator, labels: np.ndarray,
                    instances: np.ndarray) -> np.ndarray:
    """A prediction of a ground truth, as the model's
    ``label + instance * INSTANCE_OFFSET`` map, with its errors."""
    shift = tuple(int(s) for s in rng.integers(-2, 3, 2))
    labels = np.roll(labels, shift, axis=(0, 1)).copy()
    instances = np.roll(instances, shift, axis=(0, 1)).copy()
    stuff = labels >= len(THING_CLASSES)
    labels[labels == NUM_CLASSES] = len(THING_CLASSES)  # VOID as road
    things = np.unique(instances[instances > 0])
    if len(things) and rng.random() < 0.7:  # a miss: painted as stuff
        missed = instances == rng.choice(things)
        labels[missed], instances[missed] = len(THING_CLASSES) + 1, 0
    if len(things) > 1 and rng.random() < 0.5:  # a wrong class
        wrong = instances == things[-1]
        labels[wrong] = (labels[wrong] + 1) % NUM_DRAWN_THINGS
    y, x = rng.integers(0, HEIGHT - 10), rng.integers(3, WIDTH - 10)
    labels[y:y + 9, x:x + 9] = rng.integers(NUM_DRAWN_THINGS)
    instances[y:y + 9, x:x + 9] = 50  # a false positive
    grass = stuff & (labels == len(THING_CLASSES) + 2)
    labels[grass] = len(THING_CLASSES)  # grass predicted as road
    labels[rng.random(labels.shape) < 0.02] = NUM_CLASSES  # predicted VOID
    instances[labels >= len(THING_CLASSES)] = 0
    return labels + instances * INSTANCE_OFFSET


def edge_cases_scene():
    """One image of the ignore rules: a prediction mostly on VOID, one on a
    crowd of its class (both ignored), one on a crowd of another class (a
    false positive), a match at IoU just above 0.5 and a miss at just
    below."""
    labels = np.full((HEIGHT, WIDTH), CLASSES.index('grass'))
    instances = np.zeros((HEIGHT, WIDTH), np.int64)
    labels[:, 50:] = NUM_CLASSES
    labels[0:20, 0:20], instances[0:20, 0:20] = CLASSES.index('car'), 1
    labels[25:45, 0:10], instances[25:45, 0:10] = CLASSES.index('person'), 2
    labels[25:45, 20:30], instances[25:45, 20:30] = CLASSES.index('dog'), 3
    gt = labels.copy(), instances.copy(), {1}
    pred_labels = np.full((HEIGHT, WIDTH), CLASSES.index('grass'))
    pred_instances = np.zeros((HEIGHT, WIDTH), np.int64)
    regions = (
        ((slice(5, 15), slice(44, 60)), 'dog', 1),  # 100 of 160 px VOID
        ((slice(0, 10), slice(0, 10)), 'car', 2),  # in the car crowd
        ((slice(10, 20), slice(10, 20)), 'person', 3),  # crowd, wrong class
        ((slice(25, 45), slice(0, 6)), 'person', 4),  # IoU 120 / 200 = 0.6
        ((slice(25, 45), slice(20, 25)), 'dog', 5),  # IoU 100 / 200 = 0.5
    )
    for region, name, instance in regions:
        pred_labels[region], pred_instances[region] = CLASSES.index(name), \
            instance
    return gt, pred_labels + pred_instances * INSTANCE_OFFSET


def panoptic_annotation(image_id: int, ids: np.ndarray,
                        segments: list) -> dict:
    """A COCO panoptic ``annotations`` entry; areas counted in ``ids``."""
    for segment in segments:
        segment['area'] = int((ids == segment['id']).sum())
    return dict(
        image_id=image_id,
        file_name=f'{image_id}.png',
        segments_info=[s for s in segments if s['area']])


def gt_to_coco(image_id, labels, instances, crowd):
    """Ground truth labels -> (ids, annotation entry)."""
    ids = np.zeros(labels.shape, np.int64)
    segments = []
    keys = np.unique(labels * 1000 + instances)
    for key in keys[keys // 1000 != NUM_CLASSES]:
        label, instance = int(key // 1000), int(key % 1000)
        segments.append(
            dict(
                id=len(segments) + 1,
                category_id=CATEGORY_ID[CLASSES[label]],
                iscrowd=int(instance in crowd)))
        ids[labels * 1000 + instances == key] = len(segments)
    return ids, panoptic_annotation(image_id, ids, segments)


def prediction_to_coco(image_id: int, panoptic: np.ndarray):
    """A model's panoptic map -> (ids, annotation entry), as panopticapi's
    converters write predictions."""
    ids = np.zeros(panoptic.shape, np.int64)
    segments = []
    for value in np.unique(panoptic):
        label = int(value % INSTANCE_OFFSET)
        if label == NUM_CLASSES:
            continue
        segments.append(
            dict(
                id=len(segments) + 1, category_id=CATEGORY_ID[CLASSES[label]]))
        ids[panoptic == value] = len(segments)
    return ids, panoptic_annotation(image_id, ids, segments)


def write_split(root, name: str, entries: list, with_images: bool) -> str:
    """PNGs in ``root/name/`` and ``root/name.json`` (panopticapi's
    layout); returns the JSON path."""
    (root / name).mkdir()
    for image_id, ids, _ in entries:
        cv2.imwrite(
            str(root / name / f'{image_id}.png'),
            id2rgb(ids)[..., ::-1])
    coco = dict(
        annotations=[annotation for _, _, annotation in entries],
        categories=CATEGORIES)
    if with_images:
        coco['images'] = [
            dict(
                id=image_id,
                file_name=f'{image_id}.jpg',
                height=HEIGHT,
                width=WIDTH) for image_id, _, _ in entries
        ]
    path = root / f'{name}.json'
    path.write_text(json.dumps(coco))
    return str(path)


def scenes(seed: int):
    """(image id, ground truth, prediction) of a small panoptic set."""
    rng = np.random.default_rng(seed)
    for image_id in range(1, 5):
        gt = ground_truth_scene(rng)
        yield image_id, gt, predicted_scene(rng, gt[0], gt[1])
    yield (5, *edge_cases_scene())


def our_metric(gt_file: str, gt_folder: str, predictions: list) -> dict:
    metric = CocoPanopticQualityMetric(ann_file=gt_file, seg_prefix=gt_folder)
    metric.dataset_meta = dict(
        classes=CLASSES,
        thing_classes=THING_CLASSES,
        stuff_classes=STUFF_CLASSES)
    for image_id, panoptic in predictions:
        sample = dict(
            img_id=image_id,
            img_path=f'{image_id}.jpg',
            pred_panoptic_seg=dict(
                sem_seg=torch.from_numpy(panoptic)[None],
                ignore_index=NUM_CLASSES))
        metric.process({}, [sample])
    return metric.compute_metrics(metric.results)


@pytest.mark.parametrize('seed', range(4))
def test_same_pq_sq_rq_as_hotcoco(seed, tmp_path):
    gt_entries, pred_entries, predictions = [], [], []
    for image_id, gt, panoptic in scenes(seed):
        gt_entries.append((image_id, *gt_to_coco(image_id, *gt)))
        pred_entries.append(
            (image_id, *prediction_to_coco(image_id, panoptic)))
        predictions.append((image_id, panoptic))
    gt_file = write_split(tmp_path, 'gt', gt_entries, with_images=True)
    pred_file = write_split(tmp_path, 'pred', pred_entries, with_images=False)

    evaluation = hotcoco_panoptic.PanopticEval(gt_file, pred_file)
    assert evaluation.reference_deviations() == []
    evaluation.evaluate()
    theirs = dict(zip(hotcoco_panoptic.METRIC_NAMES, evaluation.stats))
    ours = our_metric(gt_file, str(tmp_path / 'gt'), predictions)

    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        assert 0 < value < 1, key  # no degenerate split
        assert ours[key] / 100 == pytest.approx(value, abs=1e-6), key
