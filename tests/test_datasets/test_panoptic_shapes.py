"""The panoptic shapes set and its loading without panopticapi."""
import json

import cv2
import numpy as np
import pytest
from mmdet.datasets import CocoPanopticDataset
from mmengine.registry import init_default_scope

from mmcentermask.datasets import (CLASSES, STUFF_CLASSES,
                                   LoadCocoPanopticAnnotations,
                                   make_panoptic_split)
from mmcentermask.evaluation.functional import id2rgb, rgb2id

METAINFO = dict(
    classes=CLASSES + STUFF_CLASSES,
    thing_classes=CLASSES,
    stuff_classes=STUFF_CLASSES)


@pytest.fixture(scope='module')
def panoptic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('panoptic_shapes')
    make_panoptic_split(
        str(root),
        'val',
        4,
        seed=2,
        size_range=(64, 96),
        max_shapes=3,
        empty_every=4)
    return root


def read_ids(path) -> np.ndarray:
    return rgb2id(cv2.imread(str(path))[..., ::-1])


def test_pngs_agree_with_the_json(panoptic_root):
    coco = json.loads(
        (panoptic_root / 'annotations' / 'panoptic_val.json').read_text())
    categories = {c['id']: c for c in coco['categories']}
    assert [c['isthing'] for c in coco['categories']] == [1, 1, 1, 0, 0, 0]
    for image, ann in zip(coco['images'], coco['annotations']):
        ids = read_ids(panoptic_root / 'annotations' / 'panoptic_val' /
                       ann['file_name'])
        assert ids.shape == (image['height'], image['width'])
        listed = {s['id']: s for s in ann['segments_info']}
        assert set(np.unique(ids)) - {0} == set(listed)
        for segment_id, segment in listed.items():
            ys, xs = np.nonzero(ids == segment_id)
            assert segment['area'] == len(ys)
            assert segment['bbox'] == [
                xs.min(),
                ys.min(),
                xs.max() + 1 - xs.min(),
                ys.max() + 1 - ys.min()
            ]
        stuff = [
            s['category_id'] for s in ann['segments_info']
            if not categories[s['category_id']]['isthing']
        ]
        assert stuff and len(stuff) == len(set(stuff))  # one per class
    # the fourth image has no shapes: stuff only
    assert all(not categories[s['category_id']]['isthing']
               for s in coco['annotations'][3]['segments_info'])


def test_same_seed_same_files(panoptic_root, tmp_path):
    make_panoptic_split(
        str(tmp_path),
        'val',
        4,
        seed=2,
        size_range=(64, 96),
        max_shapes=3,
        empty_every=4)
    for name in ('annotations/panoptic_val.json',
                 'annotations/panoptic_val/val_0002.png', 'val/val_0002.png'):
        assert (tmp_path / name).read_bytes() == (panoptic_root /
                                                  name).read_bytes(), name


def dataset(root, pipeline):
    init_default_scope('mmdet')
    return CocoPanopticDataset(
        data_root=str(root),
        metainfo=METAINFO,
        ann_file='annotations/panoptic_val.json',
        data_prefix=dict(img='val/', seg='annotations/panoptic_val/'),
        test_mode=True,
        pipeline=pipeline)


def test_loader_gives_things_and_semantic_map(panoptic_root):
    data = dataset(panoptic_root, [
        dict(type='LoadImageFromFile'),
        dict(type='LoadCocoPanopticAnnotations')
    ])[0]
    ids = read_ids(data['seg_map_path'])
    segments = data['segments_info']
    things = [s for s in segments if s['is_thing']]
    assert len(data['gt_masks']) == len(things) == len(data['gt_bboxes']) > 0
    for mask, segment in zip(data['gt_masks'].masks, things):
        assert (mask.astype(bool) == (ids == segment['id'])).all()
    seg = data['gt_seg_map']
    assert (seg[ids == 0] == 255).all()
    for segment in segments:  # labels: things 0-2, stuff 3-5
        assert (seg[ids == segment['id']] == segment['category']).all()


def test_loader_names_unlisted_ids_and_missing_pngs(panoptic_root, tmp_path):
    loader = LoadCocoPanopticAnnotations()
    results = dataset(panoptic_root, []).get_data_info(0)
    bad = tmp_path / 'bad.png'
    ids = read_ids(results['seg_map_path'])
    ids[0, 0] = 77
    cv2.imwrite(str(bad), id2rgb(ids)[..., ::-1])
    with pytest.raises(ValueError, match=r'bad\.png: segment ids \[77\]'):
        loader(dict(results, seg_map_path=str(bad), ori_shape=ids.shape))
    with pytest.raises(FileNotFoundError, match=r'nowhere\.png.*data_prefix'):
        loader(
            dict(
                results,
                seg_map_path=str(tmp_path / 'nowhere.png'),
                ori_shape=ids.shape))
