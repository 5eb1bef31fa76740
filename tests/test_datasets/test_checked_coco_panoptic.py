"""CheckedCocoPanopticDataset: labels in the config's class order, and the
category mistakes named instead of a bare KeyError or shifted labels."""
import json

import pytest
from mmdet.datasets import CocoPanopticDataset
from mmengine.registry import init_default_scope

from mmcentermask.datasets import (CLASSES, STUFF_CLASSES,
                                   CheckedCocoPanopticDataset)

METAINFO = dict(
    classes=CLASSES + STUFF_CLASSES,
    thing_classes=CLASSES,
    stuff_classes=STUFF_CLASSES)


def load(root, dataset_type=CheckedCocoPanopticDataset, ann_file=None,
         metainfo=METAINFO, **kwargs):
    init_default_scope('mmdet')
    return dataset_type(
        data_root=str(root),
        ann_file=str(ann_file or root / 'annotations/panoptic_val.json'),
        data_prefix=dict(img='val/', seg='annotations/panoptic_val/'),
        metainfo=metainfo,
        test_mode=True,
        pipeline=[],
        **kwargs)


def edited(root, tmp_path, edit):
    """A copy of the val annotation file changed by ``edit(coco)``."""
    coco = json.loads((root / 'annotations/panoptic_val.json').read_text())
    edit(coco)
    path = tmp_path / 'panoptic_val.json'
    path.write_text(json.dumps(coco))
    return path


def labels(dataset):
    """(label, is_thing) of every segment, image by image."""
    infos = [dataset.get_data_info(i) for i in range(len(dataset))]
    assert infos and any(info['segments_info'] for info in infos)
    return [[(s['category'], s['is_thing']) for s in info['segments_info']]
            for info in infos]


def test_a_correct_file_loads_as_mmdetection_loads_it(panoptic_val_root):
    assert labels(load(panoptic_val_root)) == labels(
        load(panoptic_val_root, CocoPanopticDataset))


def test_labels_follow_the_config_order_not_the_file_order(
        panoptic_val_root, tmp_path):
    reordered = edited(panoptic_val_root, tmp_path,
                       lambda coco: coco['categories'].reverse())
    expected = labels(load(panoptic_val_root))
    assert labels(load(panoptic_val_root, ann_file=reordered)) == expected
    # MMDetection's dataset takes the file's order: permuted labels
    assert labels(
        load(panoptic_val_root, CocoPanopticDataset,
             ann_file=reordered)) != expected


def test_a_segment_of_an_unknown_category_is_named(panoptic_val_root,
                                                   tmp_path):

    def add_unknown(coco):
        coco['annotations'][0]['segments_info'][0]['category_id'] = 99

    path = edited(panoptic_val_root, tmp_path, add_unknown)
    with pytest.raises(KeyError):  # MMDetection: a bare KeyError
        load(panoptic_val_root, CocoPanopticDataset, ann_file=path)
    with pytest.raises(ValueError,
                       match=r"segment \d+: category 99 \(not among the "
                       r"file's categories\).*unknown_categories='ignore'"):
        load(panoptic_val_root, ann_file=path)
    ignored = load(panoptic_val_root, ann_file=path,
                   unknown_categories='ignore')
    expected = labels(load(panoptic_val_root))
    expected[0] = expected[0][1:]
    assert labels(ignored) == expected


def test_a_declared_category_outside_the_classes_is_named(panoptic_val_root):
    things_only = dict(
        classes=CLASSES + STUFF_CLASSES[:-1],
        thing_classes=CLASSES,
        stuff_classes=STUFF_CLASSES[:-1])
    with pytest.raises(ValueError, match=f"'{STUFF_CLASSES[-1]}', declared "
                       'in the file but not in metainfo.classes'):
        load(panoptic_val_root, metainfo=things_only)


def test_a_class_the_file_lacks_is_named_with_close_names(panoptic_val_root):
    typo = dict(METAINFO, classes=('circel', ) + CLASSES[1:] + STUFF_CLASSES,
                thing_classes=('circel', ) + CLASSES[1:])
    with pytest.raises(ValueError,
                       match=r"no category named \['circel'\].*'circle'"):
        load(panoptic_val_root, metainfo=typo)


def test_a_thing_listed_as_stuff_is_named(panoptic_val_root):
    swapped = dict(
        classes=CLASSES + STUFF_CLASSES,
        thing_classes=CLASSES[:-1],
        stuff_classes=CLASSES[-1:] + STUFF_CLASSES)
    with pytest.raises(ValueError, match=f"'{CLASSES[-1]}' \\(isthing=1\\)"):
        load(panoptic_val_root, metainfo=swapped)


def test_bad_choice_is_refused(panoptic_val_root):
    with pytest.raises(ValueError, match='unknown_categories'):
        load(panoptic_val_root, unknown_categories='drop')
