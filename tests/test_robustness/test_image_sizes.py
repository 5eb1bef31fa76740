"""CheckedCocoDataset: the width/height of the annotation file must be the
size the pipeline's LoadImageFromFile loads each image at; a photo stored
sideways with an EXIF orientation tag is the usual culprit."""
import json

import numpy as np
import pytest
from mmdet.registry import DATASETS
from mmdet.utils import register_all_modules
from PIL import Image

import mmcentermask  # noqa: F401
from mmcentermask.utils.image_check import (ImageHeader,
                                            loader_applies_orientation,
                                            read_header)

register_all_modules()
STORED = (210, 189)  # width, height of the pixels in phone.jpg
UPRIGHT = (189, 210)  # the photo turned upright by its tag (6)


def pipeline(color_type='color', backend='cv2'):
    return [
        dict(
            type='LoadImageFromFile',
            color_type=color_type,
            imdecode_backend=backend),
        dict(
            type='LoadAnnotations',
            with_bbox=True,
            with_mask=True,
            poly2mask=False),
        dict(type='PackDetInputs')
    ]


def save_jpeg(path, size, orientation):
    """A noise JPEG of ``size`` (width, height) stored pixels with an EXIF
    orientation tag."""
    pixels = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3))
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels.astype(np.uint8)).save(path, exif=exif.tobytes())


def make_root(tmp_path, phone_size, orientation=6, plain_size=(40, 30)):
    """``upright.png`` (40x30) and ``phone.jpg`` (stored 210x189 with the
    tag); the file lists them as ``plain_size`` and ``phone_size``."""
    (tmp_path / 'img').mkdir(exist_ok=True)
    Image.new('RGB', (40, 30)).save(tmp_path / 'img' / 'upright.png')
    save_jpeg(tmp_path / 'img' / 'phone.jpg', STORED, orientation)
    images = [
        dict(
            id=1,
            file_name='upright.png',
            width=plain_size[0],
            height=plain_size[1]),
        dict(
            id=2,
            file_name='phone.jpg',
            width=phone_size[0],
            height=phone_size[1])
    ]
    anns = [
        dict(
            id=k,
            image_id=k,
            category_id=1,
            bbox=[5, 5, 20, 20],
            area=400.0,
            iscrowd=0,
            segmentation=[[5, 5, 25, 5, 25, 25, 5, 25]]) for k in (1, 2)
    ]
    ann_file = tmp_path / 'ann.json'
    ann_file.write_text(
        json.dumps(
            dict(
                images=images,
                annotations=anns,
                categories=[dict(id=1, name='thing')])))
    return ann_file


def build(tmp_path, ann_file, kind='CheckedCocoDataset', **kwargs):
    kwargs.setdefault('pipeline', pipeline())
    return DATASETS.build(
        dict(
            type=kind,
            data_root=str(tmp_path),
            ann_file=str(ann_file),
            data_prefix=dict(img='img/'),
            metainfo=dict(classes=('thing', )),
            **kwargs))


def loaded_shapes(dataset):
    """img_path -> (height, width) of each loaded sample."""
    samples = [dataset[i]['data_samples'] for i in range(len(dataset))]
    return {s.img_path.split('/')[-1]: s.ori_shape for s in samples}


def test_stock_coco_dataset_loads_the_photo_turned_without_a_word(tmp_path):
    """What the check exists for: the file says 210x189, the image arrives
    189 wide and 210 high, the boxes stay where they were."""
    dataset = build(tmp_path, make_root(tmp_path, STORED), kind='CocoDataset')
    assert loaded_shapes(dataset)['phone.jpg'] == (210, 189)
    assert dataset.get_data_info(1)['width'] == 210


@pytest.mark.parametrize('backend', ['cv2', 'pillow'])
def test_stored_size_with_a_turning_loader_stops_with_both_sizes_and_the_fix(
        tmp_path, backend):
    ann_file = make_root(tmp_path, STORED)
    with pytest.raises(ValueError) as info:
        build(tmp_path, ann_file, pipeline=pipeline(backend=backend))
    message = str(info.value)
    assert f'Image files of {ann_file}:' in message
    assert ('1 of 2 images are not the size the annotation file gives'
            in message)
    assert (f"image 2 ({tmp_path / 'img' / 'phone.jpg'}): the annotation file "
            'says 210x189 (width x height), the image loads as 189x210: '
            "LoadImageFromFile(color_type='color', imdecode_backend="
            f"'{backend}') applies its EXIF orientation 6 (turn 90 degrees "
            'clockwise); the file gives the stored size') in message
    assert ('Fix: Sideways-stored photos: if the annotations were drawn on '
            'the stored pixels') in message
    assert ("LoadImageFromFile(color_type='color_ignore_orientation')"
            in message)


def test_stored_size_loads_as_stored_with_color_ignore_orientation(tmp_path):
    dataset = build(
        tmp_path,
        make_root(tmp_path, STORED),
        pipeline=pipeline('color_ignore_orientation'))
    assert loaded_shapes(dataset) == {
        'upright.png': (30, 40),
        'phone.jpg': (189, 210)
    }


def test_upright_size_loads_upright_with_the_default_loader(tmp_path):
    dataset = build(tmp_path, make_root(tmp_path, UPRIGHT))
    assert loaded_shapes(dataset)['phone.jpg'] == (210, 189)


def test_upright_size_with_a_loader_that_ignores_the_tag_stops(tmp_path):
    ann_file = make_root(tmp_path, UPRIGHT)
    with pytest.raises(ValueError) as info:
        build(
            tmp_path, ann_file, pipeline=pipeline('color_ignore_orientation'))
    message = str(info.value)
    assert ('the annotation file says 189x210 (width x height), the image '
            "loads as 210x189: LoadImageFromFile(color_type='color_ignore_"
            "orientation', imdecode_backend='cv2') ignores its EXIF "
            'orientation 6') in message
    assert "let the loader turn them: LoadImageFromFile(color_type='color')" \
        in message


def test_a_wrong_size_without_a_tag_says_so(tmp_path):
    ann_file = make_root(tmp_path, UPRIGHT, plain_size=(50, 30))
    with pytest.raises(ValueError) as info:
        build(tmp_path, ann_file)
    message = str(info.value)
    assert ('image 1 (' + str(tmp_path / 'img' / 'upright.png') +
            '): the annotation file says 50x30 (width x height), the image '
            'loads as 40x30 (not an EXIF rotation)') in message
    assert "write each image's real width and height" in message
    assert 'Sideways' not in message


def test_each_loaded_sample_is_checked_without_the_header_check(tmp_path):
    dataset = build(
        tmp_path, make_root(tmp_path, STORED), check_image_files=False)
    index = next(
        i for i in range(len(dataset))
        if dataset.get_data_info(i)['img_path'].endswith('phone.jpg'))
    with pytest.raises(ValueError) as info:
        dataset[index]
    message = str(info.value)
    assert ('says 210x189 (width x height), the image loads as 189x210: '
            "LoadImageFromFile(color_type='color', imdecode_backend='cv2') "
            'applies its EXIF orientation 6') in message
    assert "color_type='color_ignore_orientation'" in message
    dataset[1 - index]  # the PNG loads at its size


def test_a_tag_the_size_cannot_confirm_is_a_warning(tmp_path, warnings_log):
    build(tmp_path, make_root(tmp_path, STORED, orientation=3))
    message = next(r for r in warnings_log if 'EXIF orientation' in r)
    assert ('1 images carry an EXIF orientation tag their width/height cannot '
            'confirm') in message
    assert 'orientation 3, turn 180 degrees' in message
    assert 'drawn on the upright picture' in message


def test_header_reads_size_format_and_orientation(tmp_path):
    save_jpeg(tmp_path / 'a.jpg', STORED, 8)
    header = read_header(str(tmp_path / 'a.jpg'))
    assert header == ImageHeader(210, 189, 'JPEG', 8)
    assert header.loaded_size(True) == UPRIGHT
    assert header.loaded_size(False) == STORED
    Image.new('RGB', (7, 5)).save(tmp_path / 'b.png')
    assert read_header(str(tmp_path / 'b.png')).loaded_size(True) == (7, 5)
    # a turning tag in a format whose handling depends on the decoder
    assert ImageHeader(7, 5, 'PNG', 6).loaded_size(True) is None
    with pytest.raises(FileNotFoundError):
        read_header(str(tmp_path / 'missing.jpg'))


@pytest.mark.parametrize('color_type,backend,applies',
                         [('color', 'cv2', True),
                          ('grayscale', 'pillow', True),
                          ('color_ignore_orientation', 'cv2', False),
                          ('unchanged', 'cv2', False),
                          ('color', 'turbojpeg', False)])
def test_which_loaders_apply_the_tag(color_type, backend, applies):
    assert loader_applies_orientation(color_type, backend) is applies
