"""CheckedCocoDataset: annotation mistakes are errors or counted warnings, RLE
masks train with poly2mask=False, NaN polygons never reach the mask targets,
a training set without one usable annotation stops with examples, missing
and unreadable image files are named. Every field of the format:
tests/test_datasets/test_coco_format.py; image sizes and EXIF orientation:
test_image_sizes.py."""
import json
import shutil

import numpy as np
import pytest
from mmdet.registry import DATASETS, MODELS
from mmdet.utils import register_all_modules
from pycocotools import mask as mask_utils

import mmcentermask  # noqa: F401
from mmcentermask.datasets import make_split

register_all_modules()
CLASSES = ('circle', 'rectangle', 'triangle')
PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(
        type='LoadAnnotations',
        with_bbox=True,
        with_mask=True,
        poly2mask=False),
    dict(type='PackDetInputs')
]


@pytest.fixture(scope='module')
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp('checked')
    make_split(
        str(root),
        'train',
        4,
        seed=3,
        size_range=(64, 80),
        max_shapes=3,
        empty_every=0)
    return root


def write(root, tmp_path, edit):
    """The train split's annotation file changed by ``edit(dict)``."""
    data = json.loads((root / 'annotations/train.json').read_text())
    edit(data)
    path = tmp_path / 'train.json'
    path.write_text(json.dumps(data))
    return str(path)


def build(root, ann_file, classes=CLASSES, pipeline=PIPELINE, **kwargs):
    kwargs.setdefault('filter_cfg', dict(filter_empty_gt=True, min_size=0))
    return DATASETS.build(
        dict(
            type='CheckedCocoDataset',
            data_root=str(root),
            ann_file=ann_file,
            data_prefix=dict(img='train/'),
            metainfo=dict(classes=classes),
            pipeline=pipeline,
            **kwargs))


def test_clean_file_loads_without_warnings(source, tmp_path, warnings_log):
    dataset = build(source, write(source, tmp_path, lambda d: None))
    assert len(dataset) == 4
    assert not [r for r in warnings_log if 'CheckedCocoDataset' in r]


def test_misspelt_class_stops_with_the_close_name(source, tmp_path):
    ann = write(source, tmp_path, lambda d: None)
    with pytest.raises(ValueError) as info:
        build(source, ann, classes=('circle', 'rectangel', 'triangle'))
    message = str(info.value)
    assert "'rectangel' (did you mean 'rectangle'?)" in message
    assert ann in message


def test_bad_json_names_the_file(source, tmp_path):
    path = tmp_path / 'broken.json'
    path.write_text('{"images": [], "annotations": [,]}')
    with pytest.raises(
            ValueError, match=r'broken.json is not valid JSON: .* line 1'):
        build(source, str(path))


def test_unknown_category_ids_are_counted_or_stop(source, tmp_path,
                                                  warnings_log):

    def edit(data):
        data['annotations'][0]['category_id'] = 99
        data['annotations'][1]['category_id'] = 99

    ann = write(source, tmp_path, edit)
    build(source, ann)
    assert any(
        '2 annotations with a category_id the file does not declare (ids 99)'
        in r for r in warnings_log)
    with pytest.raises(ValueError, match='category_id 99'):
        build(source, ann, unknown_categories='error')


def test_non_finite_and_degenerate_polygons_are_dropped_with_a_count(
        source, tmp_path, warnings_log):

    def edit(data):
        anns = data['annotations']
        anns[0]['segmentation'][0][3] = float('nan')  # its only polygon
        anns[1]['segmentation'].append([1.0, 2.0, 3.0, 4.0])  # 2 points, extra
        anns[2]['bbox'][2] = float('inf')

    ann = write(source, tmp_path, edit)
    dataset = build(source, ann)
    message = next(r for r in warnings_log if 'CheckedCocoDataset' in r)
    assert '1 annotations with a NaN/infinite box were dropped' in message
    assert '1 polygons with NaN/infinite coordinates were dropped' in message
    assert '1 polygons with fewer than 3 points were dropped' in message
    assert '1 annotations left without a valid polygon were dropped' in message
    total = sum(
        len(dataset.get_data_info(i)['instances'])
        for i in range(len(dataset)))
    original = len(
        json.loads(
            (source / 'annotations/train.json').read_text())['annotations'])
    assert total == original - 2
    for i in range(len(dataset)):  # nothing non-finite reaches the pipeline
        for inst in dataset.get_data_info(i)['instances']:
            assert np.isfinite(inst['bbox']).all()
            assert all(
                np.isfinite(p).all() and len(p) >= 6 for p in inst['mask'])


def test_rle_masks_train_with_poly2mask_false(source, tmp_path, warnings_log):
    originals = json.loads((source / 'annotations/train.json').read_text())

    def edit(data):
        for ann, img in ((a,
                          next(i for i in data['images']
                               if i['id'] == a['image_id']))
                         for a in data['annotations']):
            rles = mask_utils.frPyObjects(ann['segmentation'], img['height'],
                                          img['width'])
            rle = mask_utils.merge(rles)
            ann['segmentation'] = dict(
                size=rle['size'], counts=rle['counts'].decode())

    ann = write(source, tmp_path, edit)
    dataset = build(source, ann)
    assert any('RLE masks were converted to polygons' in r
               for r in warnings_log)
    sample = dataset[0]['data_samples']
    masks = sample.gt_instances.masks
    assert len(masks) == len([
        a for a in originals['annotations']
        if a['image_id'] == dataset.get_data_info(0)['img_id']
    ]) > 0
    assert (masks.areas
            > 0).all()  # real masks: the mask and MaskIoU losses see them
    # the polygons cover the RLE bitmap (IoU with the original polygon raster >
    # 0.9)
    info = dataset.get_data_info(0)
    for inst, poly_ann in zip(info['instances'], [
            a for a in originals['annotations']
            if a['image_id'] == info['img_id']
    ]):
        h, w = info['height'], info['width']
        ours = mask_utils.decode(
            mask_utils.merge(mask_utils.frPyObjects(inst['mask'], h, w)))
        theirs = mask_utils.decode(
            mask_utils.merge(
                mask_utils.frPyObjects(poly_ann['segmentation'], h, w)))
        iou = (ours & theirs).sum() / max((ours | theirs).sum(), 1)
        assert iou > 0.8, iou


def test_stock_coco_dataset_ignores_rle_with_poly2mask_false(source, tmp_path):
    """The MMDetection behaviour the conversion exists for."""

    def edit(data):
        img = data['images'][0]
        for ann in data['annotations']:
            rle = mask_utils.merge(
                mask_utils.frPyObjects(ann['segmentation'], img['height'],
                                       img['width']))
            ann['segmentation'] = dict(
                size=rle['size'], counts=rle['counts'].decode())

    ann = write(source, tmp_path, edit)
    stock = DATASETS.build(
        dict(
            type='CocoDataset',
            data_root=str(source),
            ann_file=ann,
            data_prefix=dict(img='train/'),
            metainfo=dict(classes=CLASSES),
            pipeline=PIPELINE))
    assert len(stock[0]['data_samples'].gt_instances) == 0


def test_empty_training_set_is_one_clear_line(source, tmp_path):
    ann = write(source, tmp_path, lambda d: d.update(annotations=[]))
    with pytest.raises(
            ValueError,
            match='No training image left in .*train.json: 4 '
            'images read, none with a usable annotation'):
        build(source, ann)
    build(source, ann, test_mode=True)  # evaluation of an empty set is fine


def test_images_with_only_invalid_boxes_are_counted(source, tmp_path,
                                                    warnings_log):

    def edit(data):
        for ann in data['annotations']:
            if ann['image_id'] == 1:
                ann['bbox'] = [10, 10, 0, 0]  # zero-size

    build(source, write(source, tmp_path, edit))
    assert any('1 images have annotations but none valid' in r
               for r in warnings_log)


def test_training_step_on_crowd_rle_odd_boxes_and_an_empty_image(
        source, tmp_path):
    """Cases that work: a crowd RLE region (ignored), a zero-size box and a box
    wholly outside the image (dropped), a box half outside (kept), an image
    with no annotation; one training step of the tiny CenterMask gives five
    finite losses."""
    import torch
    from mmengine.dataset import pseudo_collate
    from detector_utils import LOSSES, tiny_cfg

    def edit(data):
        ids = [img['id'] for img in data['images']]
        img1 = next(i for i in data['images'] if i['id'] == ids[0])
        rle = mask_utils.encode(
            np.asfortranarray(
                np.pad(
                    np.ones((10, 12), np.uint8),
                    ((5, img1['height'] - 15), (5, img1['width'] - 17)))))
        anns = [a for a in data['annotations'] if a['image_id'] not in ids[:3]]
        anns += [
            dict(
                id=1001,
                image_id=ids[0],
                category_id=1,
                iscrowd=1,
                area=120.0,
                bbox=[5, 5, 12, 10],
                segmentation=dict(
                    size=rle['size'], counts=rle['counts'].decode())),
            dict(
                id=1002,
                image_id=ids[1],
                category_id=2,
                iscrowd=0,
                area=0.0,
                bbox=[10, 10, 0, 0],
                segmentation=[[10, 10, 10, 10, 10, 10]]),
            dict(
                id=1003,
                image_id=ids[1],
                category_id=2,
                iscrowd=0,
                area=100.0,
                bbox=[500, 500, 10, 10],
                segmentation=[[500, 500, 510, 500, 510, 510, 500, 510]]),
            dict(
                id=1004,
                image_id=ids[1],
                category_id=3,
                iscrowd=0,
                area=200.0,
                bbox=[-10, 20, 20, 20],
                segmentation=[[-10, 20, 10, 20, 10, 40, -10, 40]]),
        ]
        data['annotations'] = anns  # ids[2]: no annotation at all

    dataset = build(source, write(source, tmp_path, edit), filter_cfg=None)
    samples = [dataset[i] for i in range(len(dataset))]
    by_id = {s['data_samples'].img_id: s['data_samples'] for s in samples}
    ids = sorted(by_id)
    assert len(by_id[ids[0]].gt_instances) == 0
    assert len(by_id[ids[0]].ignored_instances) == 1  # the crowd region
    assert len(by_id[ids[1]].gt_instances) == 1  # only the half-outside box
    assert by_id[ids[1]].gt_instances.labels.tolist() == [2]
    assert len(by_id[ids[2]].gt_instances) == 0  # the empty image
    torch.manual_seed(0)
    model = MODELS.build(tiny_cfg())
    model.train()
    data = model.data_preprocessor(pseudo_collate(samples), True)
    losses = model.loss(data['inputs'], data['data_samples'])
    assert set(losses) == set(LOSSES)
    total = sum(losses.values())
    assert torch.isfinite(total), losses
    total.backward()


def test_empty_image_file_stops_loading_with_its_name(source, tmp_path):
    root = tmp_path / 'root'
    shutil.copytree(source, root)
    data = json.loads((root / 'annotations/train.json').read_text())
    image = root / 'train' / data['images'][0]['file_name']
    image.write_bytes(b'')
    with pytest.raises(ValueError) as info:
        build(root, str(root / 'annotations/train.json'))
    assert (f'Image {image} (in {root}/annotations/train.json) cannot be '
            'read: empty file (0 bytes)') in str(info.value)
    # the header check off: the sample that loads it names it
    dataset = build(
        root, str(root / 'annotations/train.json'), check_image_files=False)
    index = next(
        i for i in range(len(dataset))
        if dataset.get_data_info(i)['img_path'] == str(image))
    with pytest.raises(ValueError, match=r'empty file \(0 bytes\)') as info:
        dataset[index]
    assert str(image) in str(info.value)


def test_truncated_image_is_named_when_its_sample_loads(source, tmp_path):
    """A truncated file has a readable header: the load check passes, the
    sample names it."""
    root = tmp_path / 'root'
    shutil.copytree(source, root)
    data = json.loads((root / 'annotations/train.json').read_text())
    image = root / 'train' / data['images'][0]['file_name']
    image.write_bytes(image.read_bytes()[:200])
    dataset = build(root, str(root / 'annotations/train.json'))
    index = next(
        i for i in range(len(dataset))
        if dataset.get_data_info(i)['img_path'] == str(image))
    with pytest.raises(ValueError, match='truncated or corrupt PNG') as info:
        dataset[index]
    assert str(image) in str(info.value)


def test_missing_image_files_stop_loading_with_the_fix(source, tmp_path):
    ann = write(source, tmp_path,
                lambda d: d['images'][1].update(file_name='gone.png'))
    with pytest.raises(ValueError) as info:
        build(source, ann)
    message = str(info.value)
    assert '1 of 4 images do not exist:' in message
    assert f"image 2: {source / 'train' / 'gone.png'}" in message
    assert 'check data_root and data_prefix.img' in message


# -- a training set in which no annotation is usable ------------------------


def edit_all(field, value):
    """An edit that gives every annotation ``field=value``."""

    def edit(data):
        for ann in data['annotations']:
            ann[field] = value

    return edit


def nan_polygons(data):
    for ann in data['annotations']:
        ann['segmentation'] = [[float('nan')] * 8]


@pytest.mark.parametrize(
    'edit,words',
    [(edit_all('bbox', [10, 10, 0, 5]), [
        'annotations with a box narrower or lower than 1 px were dropped',
        'bbox=[10, 10, 0, 5]'
    ]),
     (edit_all('bbox', [500, 500, 10, 10]), [
         'annotations with a box outside the image were dropped',
         'bbox=[500, 500, 10, 10]'
     ]),
     (nan_polygons, [
         'polygons with NaN/infinite coordinates were dropped',
         'annotations left without a valid polygon were dropped',
         'segmentation=[[nan, nan'
     ]),
     (edit_all('iscrowd',
               1), ['crowd regions (iscrowd=1) train as ignored areas only'])],
    ids=['zero-width boxes', 'boxes outside', 'NaN polygons', 'all crowd'])
@pytest.mark.parametrize(
    'filter_cfg', [dict(filter_empty_gt=True, min_size=0), None],
    ids=['filter_empty_gt', 'no filter'])
def test_no_usable_annotation_stops_training_with_examples(
        source, tmp_path, edit, words, filter_cfg):
    """Before: the images were kept (filter_empty_gt looks at the file, not
    at what survived) and training ran on background only."""
    ann = write(source, tmp_path, edit)
    total = len(json.loads(open(ann).read())['annotations'])
    with pytest.raises(ValueError) as info:
        build(source, ann, filter_cfg=filter_cfg)
    message = str(info.value)
    assert message.startswith(
        f'No training image left in {ann}: 4 images read, none with a usable '
        f'annotation of classes {CLASSES}; of its {total} annotations:')
    for word in words:
        assert word in message, (word, message)
    if 'crowd' not in words[0]:
        first = json.loads(open(ann).read())['annotations'][0]
        assert (f"annotation {first['id']} of image {first['image_id']} "
                "('train_0000.png')") in message
        assert 'Fix the annotations' in message
    assert 'background only' in message
    build(source, ann, test_mode=True)  # evaluating such a set is allowed


def test_stock_coco_dataset_keeps_images_without_a_valid_annotation(
        source, tmp_path):
    """The MMDetection behaviour the check above exists for."""
    stock = DATASETS.build(
        dict(
            type='CocoDataset',
            data_root=str(source),
            ann_file=write(source, tmp_path, edit_all('bbox', [10, 10, 0, 5])),
            data_prefix=dict(img='train/'),
            metainfo=dict(classes=CLASSES),
            filter_cfg=dict(filter_empty_gt=True, min_size=0),
            pipeline=PIPELINE))
    assert len(stock) == 4
    assert all(not stock.get_data_info(i)['instances'] for i in range(4))


def test_no_annotation_of_the_classes_names_the_unused_ones(source, tmp_path):
    ann = write(source, tmp_path, edit_all('category_id', 3))
    with pytest.raises(ValueError) as info:
        build(source, ann, classes=('circle', 'rectangle'))
    message = str(info.value)
    assert 'annotations of categories not in metainfo.classes were not used' \
        in message
    assert 'Check that metainfo.classes names the categories' in message
