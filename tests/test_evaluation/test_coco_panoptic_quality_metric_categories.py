"""CocoPanopticQualityMetric refuses a panoptic file whose segments use a
category the dataset's classes lack (or one missing from the file's own
category list) as soon as it gets the dataset's meta: such segments would
otherwise drop out of PQ unnoticed."""
import json

import pytest

from mmcentermask.datasets import CLASSES, STUFF_CLASSES
from mmcentermask.evaluation import CocoPanopticQualityMetric


def metric_of(ann_file) -> CocoPanopticQualityMetric:
    return CocoPanopticQualityMetric(
        ann_file=str(ann_file), seg_prefix=str(ann_file.parent))


def meta(thing_classes, stuff_classes) -> dict:
    return dict(
        classes=thing_classes + stuff_classes,
        thing_classes=thing_classes,
        stuff_classes=stuff_classes)


def used_categories(ann_file) -> set:
    coco = json.loads(ann_file.read_text())
    return {
        s['category_id']
        for a in coco['annotations']
        for s in a['segments_info']
    }


def test_a_stuff_class_the_config_lacks_is_named(panoptic_val_root):
    ann_file = panoptic_val_root / 'annotations/panoptic_val.json'
    categories = {
        c['name']: c['id']
        for c in json.loads(ann_file.read_text())['categories']
    }
    missing = STUFF_CLASSES[-1]
    assert categories[missing] in used_categories(ann_file)
    metric = metric_of(ann_file)
    with pytest.raises(ValueError) as error:
        metric.dataset_meta = meta(CLASSES, STUFF_CLASSES[:-1])
    message = str(error.value)
    assert str(ann_file) in message
    assert f'{categories[missing]} "{missing}" (stuff' in message
    assert 'stuff_classes' in message and 'num_stuff_classes' in message


def test_a_thing_class_the_config_lacks_is_named(panoptic_val_root):
    ann_file = panoptic_val_root / 'annotations/panoptic_val.json'
    metric = metric_of(ann_file)
    with pytest.raises(ValueError, match=rf'"{CLASSES[0]}" \(thing'):
        metric.dataset_meta = meta(CLASSES[1:], STUFF_CLASSES)


def test_an_unused_category_outside_the_classes_is_fine(
        panoptic_val_root, tmp_path):
    ann_file = panoptic_val_root / 'annotations/panoptic_val.json'
    coco = json.loads(ann_file.read_text())
    coco['categories'].append(dict(id=99, name='water', isthing=0))
    edited = tmp_path / 'panoptic_val.json'
    edited.write_text(json.dumps(coco))
    metric = metric_of(edited)
    metric.dataset_meta = meta(CLASSES, STUFF_CLASSES)
    assert 99 not in metric.categories()[0]


def test_a_category_missing_from_the_file_list_is_named(
        panoptic_val_root, tmp_path):
    ann_file = panoptic_val_root / 'annotations/panoptic_val.json'
    coco = json.loads(ann_file.read_text())
    dropped = coco['categories'].pop()
    assert dropped['id'] in used_categories(ann_file)
    edited = tmp_path / 'panoptic_val.json'
    edited.write_text(json.dumps(coco))
    with pytest.raises(ValueError) as error:
        metric_of(edited)
    message = str(error.value)
    assert str(edited) in message
    assert f'category ids [{dropped["id"]}]' in message
    assert '"categories" list' in message
