"""Every field of a COCO annotation file that can be wrong: structural
problems stop loading with one error naming the entries, the field and the
value; problems of one annotation drop it with a counted, named warning."""
import json

import numpy as np
import pytest
from mmdet.registry import DATASETS
from mmdet.utils import register_all_modules
from pycocotools import mask as mask_utils

import mmcentermask  # noqa: F401
from mmcentermask.datasets.coco_format import (ProblemLog, check_structure,
                                               rle_string_runs, short_repr,
                                               valid_polygons)

register_all_modules()
CLASSES = ('circle', 'rectangle')
# no LoadImageFromFile: the annotation file alone, no image files needed
PIPELINE = [
    dict(
        type='LoadAnnotations',
        with_bbox=True,
        with_mask=True,
        poly2mask=False)
]


def square(x, y, side=10):
    return [x, y, x + side, y, x + side, y + side, x, y + side]


def tiny_coco():
    """Two 64x48 images, three valid annotations (ids 1-3)."""
    return dict(
        images=[
            dict(id=1, file_name='a.png', width=64, height=48),
            dict(id=2, file_name='b.png', width=64, height=48)
        ],
        categories=[dict(id=1, name='circle'),
                    dict(id=2, name='rectangle')],
        annotations=[
            dict(
                id=k,
                image_id=image_id,
                category_id=cat,
                bbox=[x, 4, 10, 10],
                area=100.0,
                iscrowd=0,
                segmentation=[square(x, 4)])
            for k, image_id, cat, x in ((1, 1, 1, 4), (2, 2, 2, 4), (3, 2, 1,
                                                                     30))
        ])


def build(tmp_path, edit, **kwargs):
    data = tiny_coco()
    edit(data)
    path = tmp_path / 'ann.json'
    path.write_text(json.dumps(data))
    return DATASETS.build(
        dict(
            type='CheckedCocoDataset',
            data_root=str(tmp_path),
            ann_file=str(path),
            data_prefix=dict(img=''),
            metainfo=dict(classes=CLASSES),
            filter_cfg=None,
            pipeline=PIPELINE,
            **kwargs))


def image(data, index=0):
    return data['images'][index]


def ann(data, index=0):
    return data['annotations'][index]


def category(data, index=0):
    return data['categories'][index]


def duplicate_image_ids(d):
    image(d, 1)['id'] = 1


def duplicate_file_names(d):
    image(d, 1)['file_name'] = 'a.png'


def duplicate_annotation_ids(d):
    ann(d, 1)['id'] = 1


# (case, edit of the tiny file, words the error must contain)
STRUCTURAL = [
    ('images an object', lambda d: d.update(images={}),
     ["'images' missing or not a list", 'images={}']),
    ('no images', lambda d: d.pop('images'),
     ["top-level 'images' missing", 'images=None']),
    ('no categories', lambda d: d.pop('categories'),
     ["top-level 'categories' missing"]),
    ('annotations not a list', lambda d: d.update(annotations={}),
     ["'annotations' missing or not a list", 'annotations={}']),
    ('image not an object', lambda d: d['images'].append('c.png'),
     ['images entries that are not JSON objects', "images[2]='c.png'"]),
    ('image without id', lambda d: image(d).pop('id'),
     ["images without 'id'", 'images[0]']),
    ('image id a string', lambda d: image(d).update(id='1'),
     ["images whose 'id' is not an integer", "id='1'"]),
    ('image without file_name', lambda d: image(d).pop('file_name'),
     ["images without 'file_name'", 'images[0] (id 1)']),
    ('empty file_name', lambda d: image(d).update(file_name=''),
     ["images whose 'file_name' is not a file name", "file_name=''"]),
    ('image without height', lambda d: image(d).pop('height'),
     ["images without 'height'", 'images[0] (id 1)']),
    ('width a string', lambda d: image(d).update(width='64'),
     ["images whose 'width' is not an integer > 0", "width='64'"]),
    ('width a float', lambda d: image(d).update(width=64.5),
     ["images whose 'width' is not an integer > 0", 'width=64.5']),
    ('height zero', lambda d: image(d).update(height=0),
     ["images whose 'height' is not an integer > 0", 'height=0']),
    ('duplicate image ids', duplicate_image_ids,
     ['duplicate image ids', 'id 1 x2']),
    ('duplicate file names', duplicate_file_names,
     ['duplicate image file_names', "file_name 'a.png' x2"]),
    ('category without name', lambda d: category(d).pop('name'),
     ["categories without 'name'", 'categories[0] (id 1)']),
    ('category id a string', lambda d: category(d).update(id='1'),
     ["categories whose 'id' is not an integer", "id='1'"]),
    ('duplicate category ids', lambda d: category(d, 1).update(id=1),
     ['duplicate category ids', 'id 1 x2']),
    ('duplicate category names',
     lambda d: category(d, 1).update(name='circle'),
     ['duplicate category names', "name 'circle' x2"]),
    ('annotation not an object', lambda d: d['annotations'].append(None),
     ['annotations entries that are not JSON objects', 'annotations[3]=None']),
    ('annotation without id', lambda d: ann(d).pop('id'),
     ["annotations without 'id'", 'annotations[0]']),
    ('annotation id a float', lambda d: ann(d).update(id=1.5),
     ["annotations whose 'id' is not an integer", 'id=1.5']),
    ('duplicate annotation ids', duplicate_annotation_ids,
     ['duplicate annotation ids', 'id 1 x2']),
    ('annotation without image_id', lambda d: ann(d).pop('image_id'),
     ["annotations without 'image_id'", 'annotations[0] (id 1)']),
    ('image_id a string', lambda d: ann(d).update(image_id='1'),
     ["annotations whose 'image_id' is not an integer", "image_id='1'"]),
    ('annotation without category_id', lambda d: ann(d).pop('category_id'),
     ["annotations without 'category_id'", 'annotations[0] (id 1)']),
]


@pytest.mark.parametrize(
    'edit,words', [case[1:] for case in STRUCTURAL],
    ids=[case[0] for case in STRUCTURAL])
def test_structural_problems_stop_with_the_entry_field_and_value(
        tmp_path, edit, words):
    with pytest.raises(ValueError) as info:
        build(tmp_path, edit)
    message = str(info.value)
    assert 'ann.json is not a usable COCO file' in message
    for word in words:
        assert word in message, (word, message)
    assert 'Fix the file' in message


def test_a_json_array_is_named():
    with pytest.raises(ValueError, match='holds a JSON list, not an object'):
        check_structure([], 'x.json')


def test_test_set_image_lists_need_no_annotations(tmp_path):
    dataset = build(tmp_path, lambda d: d.pop('annotations'), test_mode=True)
    assert len(dataset) == 2


def rle_of_square(height=48, width=64):
    bitmap = np.zeros((height, width), np.uint8)
    bitmap[4:14, 4:14] = 1
    rle = mask_utils.encode(np.asfortranarray(bitmap))
    return dict(size=rle['size'], counts=rle['counts'].decode())


def uncompressed_rle(total):
    return dict(size=[48, 64], counts=[100, 20, total - 120])


# (case, edit of annotation 1 (image 1 'a.png'), words the warning must
# contain); each drops annotation 1
PER_ANNOTATION = [
    ('image_id of no image', dict(image_id=7),
     ['annotations whose image_id no image has', 'image_id=7']),
    ('iscrowd 2', dict(iscrowd=2),
     ['annotations whose iscrowd is not 0 or 1', 'iscrowd=2']),
    ('iscrowd a string', dict(iscrowd='0'), ["iscrowd='0'"]),
    ('no bbox', dict(bbox=None),
     ['annotations whose bbox is not 4 numbers', 'bbox=None']),
    ('bbox of 3 numbers', dict(bbox=[4, 4, 10]),
     ['bbox is not 4 numbers', 'bbox=[4, 4, 10]']),
    ('bbox with a string', dict(bbox=[4, 4, '10', 10]),
     ['bbox is not 4 numbers', "bbox=[4, 4, '10', 10]"]),
    ('bbox NaN', dict(bbox=[4, 4, float('nan'), 10]),
     ['annotations with a NaN/infinite box', 'bbox=[4, 4, nan, 10]']),
    ('negative width', dict(bbox=[14, 4, -10, 10]), [
        'annotations with a box narrower or lower than 1 px',
        'bbox=[14, 4, -10, 10]'
    ]),
    ('zero height', dict(bbox=[4, 4, 10, 0]),
     ['narrower or lower than 1 px', 'bbox=[4, 4, 10, 0]']),
    ('box outside the image', dict(bbox=[70, 4, 10, 10]), [
        'annotations with a box outside the image', 'bbox=[70, 4, 10, 10]',
        'image 64x48'
    ]),
    ('no area', dict(area=None), [
        'annotations whose area is missing, not a number or not > 0',
        'area=None'
    ]),
    ('area zero', dict(area=0), ['area=0']),
    ('area a string', dict(area='100'), ["area='100'"]),
    ('no segmentation', dict(segmentation=None), [
        'annotations without a segmentation (the pipeline loads masks)',
        'segmentation=None'
    ]),
    ('empty segmentation', dict(segmentation=[]),
     ['without a segmentation', 'segmentation=[]']),
    ('segmentation a string', dict(segmentation='mask.png'), [
        'segmentation is neither a list of polygons nor an RLE dict',
        "segmentation='mask.png'"
    ]),
    ('flat polygon', dict(segmentation=square(4, 4)),
     ['segmentation is one flat list of numbers', 'segmentation=[4, 4, 14']),
    ('polygon with strings',
     dict(segmentation=[['4', '4', '14', '4', '14', '14']]),
     ['polygons that are not flat lists of numbers', "segmentation=[['4'"]),
    ('polygon of points', dict(segmentation=[[[4, 4], [14, 4], [14, 14]]]), [
        'polygons that are not flat lists of numbers',
        'segmentation=[[[4, 4], [14, 4]'
    ]),
    ('polygon NaN',
     dict(segmentation=[[4, 4, 14, float('nan'), 14, 14]]),
     ['polygons with NaN/infinite coordinates', 'nan']),
    ('polygon of 2 points', dict(segmentation=[[4, 4, 14, 4]]),
     ['polygons with fewer than 3 points', 'segmentation=[[4, 4, 14, 4]]']),
    ('polygon of odd length', dict(segmentation=[[4, 4, 14, 4, 14, 14, 4]]), [
        'polygons with fewer than 3 points', 'annotations left without a '
        'valid polygon'
    ]),
    ('RLE without size', dict(segmentation=dict(counts='abc')), [
        "RLE mask lacks a 'size' [height, width] or valid 'counts'",
        "segmentation={'counts': 'abc'}"
    ]),
    ('RLE counts a number', dict(segmentation=dict(size=[48, 64], counts=5)),
     ["lacks a 'size' [height, width] or valid 'counts'"]),
    ('RLE of another size',
     dict(segmentation=dict(rle_of_square(), size=[64, 48])), [
         'annotations whose RLE size is not the image [height, width]',
         'segmentation.size=[64, 48]', 'image height x width 48x64'
     ]),
    ('uncompressed RLE of wrong length',
     dict(segmentation=uncompressed_rle(3000)), [
         'annotations whose RLE runs do not add up to height x width',
         'runs add up to 3000, not 48x64'
     ]),
    ('uncompressed RLE with a negative run',
     dict(segmentation=dict(size=[48, 64], counts=[3100, -28])),
     ['RLE runs do not add up', 'segmentation.counts=[3100, -28]']),
    ('compressed RLE of another image',
     dict(segmentation=dict(rle_of_square(96, 64), size=[48, 64])),
     ['RLE runs do not add up', 'runs add up to 6144, not 48x64']),
    ('uncompressed RLE with floats',
     dict(segmentation=dict(size=[48, 64], counts=[100.5, 3071.5])),
     ["valid 'counts'", 'segmentation.counts=[100.5, 3071.5]']),
    ('compressed RLE of bad characters',
     dict(segmentation=dict(size=[48, 64], counts='abc')), [
         'compressed RLE counts are not an RLE string',
         "segmentation.counts='abc'"
     ]),
    ('unknown category', dict(category_id=99), [
        'annotations with a category_id the file does not declare (ids 99)',
        'category_id=99'
    ]),
]


@pytest.mark.parametrize(
    'change,words', [case[1:] for case in PER_ANNOTATION],
    ids=[case[0] for case in PER_ANNOTATION])
def test_a_bad_annotation_is_dropped_with_a_named_warning(
        tmp_path, warnings_log, change, words):
    dataset = build(tmp_path, lambda d: ann(d).update(change))
    message = next(r for r in warnings_log if 'CheckedCocoDataset' in r)
    assert 'ann.json: 1 ' in message
    image_id = change.get('image_id', 1)
    name = '' if 'image_id' in change else " ('a.png')"
    assert f'annotation 1 of image {image_id}{name}: ' in message
    for word in words:
        assert word in message, (word, message)
    kept = [
        len(dataset.get_data_info(i)['instances'])
        for i in range(len(dataset))
    ]
    assert kept == [0, 2]  # annotation 1 is gone, 2 and 3 train


def test_a_good_file_gives_no_warning(tmp_path, warnings_log):
    dataset = build(tmp_path, lambda d: None)
    assert [len(dataset.get_data_info(i)['instances'])
            for i in range(2)] == [1, 2]
    assert not [r for r in warnings_log if 'CheckedCocoDataset' in r]


def test_good_rle_crowd_and_bool_iscrowd_are_kept(tmp_path, warnings_log):

    def edit(d):
        ann(d).update(segmentation=rle_of_square(), iscrowd=True)
        ann(d, 1).update(segmentation=uncompressed_rle(48 * 64), iscrowd=1)

    dataset = build(tmp_path, edit)
    flags = [
        inst['ignore_flag'] for i in range(2)
        for inst in dataset.get_data_info(i)['instances']
    ]
    assert sorted(flags) == [0, 1, 1]
    assert not [r for r in warnings_log if 'CheckedCocoDataset' in r]


def test_problem_log_keeps_counts_and_the_first_examples():
    log = ProblemLog(examples_per_kind=2)
    for k in range(5):
        log.add('box', f'annotation {k}')
    log.add('box')
    assert log.counts['box'] == 6
    assert log.line('box', 'bad boxes', 2) == ('6 bad boxes (e.g. annotation '
                                               '0; annotation 1)')
    assert not ProblemLog()


def test_valid_polygons_keeps_the_drawable_ones():
    kept, dropped = valid_polygons([
        square(0, 0), [0, 0, 1, 1], [0, 0, 1, float('inf'), 2, 2], 'x',
        [1, 2, 3, 4, 5, 6]
    ])
    assert kept == [square(0, 0), [1, 2, 3, 4, 5, 6]]
    assert dropped == [
        'polygon with < 3 points', 'non-finite polygon', 'polygon values'
    ]


def test_short_repr_cuts_long_values():
    text = short_repr([list(range(1000))])
    assert len(text) < 80 and text.startswith('[[0, 1, 2')


def test_rle_string_runs_reads_what_pycocotools_writes():
    rng = np.random.default_rng(0)
    for _ in range(50):
        height, width = (int(v) for v in rng.integers(1, 60, 2))
        bitmap = (rng.random((height, width)) < rng.random()).astype(np.uint8)
        counts = mask_utils.encode(np.asfortranarray(bitmap))['counts']
        column_major = bitmap.T.reshape(-1)  # COCO runs go down the columns
        changes = np.flatnonzero(np.diff(column_major)) + 1
        runs = np.diff(np.r_[0, changes, column_major.size])
        if column_major[0]:
            runs = np.r_[0, runs]  # the first run counts zeros
        assert rle_string_runs(counts.decode()).tolist() == runs.tolist()
    for malformed in ('abc', '\x7f' * 7, 'é', 'zzzzzzzz'):
        assert rle_string_runs(malformed) is None
