"""``CocoDataset`` that checks its annotations instead of dropping them.

MMDetection's :class:`~mmdet.datasets.CocoDataset` (with pycocotools
underneath) accepts several mistakes without a word.
:class:`CheckedCocoDataset` subclasses it and, while it
loads the annotation file (once, before training; linear in the number of
annotations):

* **a bad JSON file** raises ``ValueError`` naming the file, line and column
  (instead of a bare ``JSONDecodeError``);
* **structural problems** (a missing or wrongly typed id, file_name,
  width/height, image_id or category_id; duplicate image, annotation or
  category ids, file names or category names) raise one ``ValueError``
  listing each kind with its count and first entries
  (:func:`~mmcentermask.datasets.coco_format.check_structure`);
* **class names in ``metainfo.classes`` that the file does not have** raise
  ``ValueError`` listing them with the closest names of the file (a misspelt
  name otherwise drops that class and shifts the labels of the others);
* **annotations with a ``category_id`` the file does not declare** are counted
  and reported (``unknown_categories='warn'``, default) or stop loading
  (``'error'``); annotations of declared categories outside ``classes`` are
  counted and reported too;
* **annotations that cannot train** are dropped and counted by reason, with
  the first of each named (id, image, field, value): an ``image_id`` no image
  has, ``iscrowd`` not 0/1, a ``bbox`` that is not 4 finite numbers, smaller
  than 1x1 px or outside the image, an ``area`` that is missing or not > 0, a
  missing segmentation when the pipeline loads masks, an RLE whose size is
  not the image's; **polygons** with non-finite coordinates, fewer than 3
  points or an odd number of values are dropped, and an annotation left
  without any polygon is dropped (a NaN polygon otherwise makes the
  mask-target rasterisation allocate gigabytes);
* **RLE masks of non-crowd annotations** are converted to polygons (the outer
  and inner contours of the decoded bitmap) when the pipeline loads masks with
  ``LoadAnnotations(poly2mask=False)``, which otherwise ignores every RLE
  instance;
* **images whose every annotation is invalid** are counted in the warning;
* **a training set with no usable annotation** (every annotation dropped, or
  none of the classes) stops with the counts and the first offending
  annotations, instead of training on background only;
* **image files** are checked from their headers (``check_image_files=True``,
  under 0.1 ms per image): a missing or unreadable file, or a width/height in
  the annotation file that is not the size the pipeline's
  ``LoadImageFromFile`` loads the image at, stops with the images, both sizes,
  whether the EXIF orientation tag explains the difference, and the fix;
* **each loaded sample** is checked again: a decoded size other than the
  annotation file's, or an image that cannot be decoded (empty, truncated, not
  an image), raises ``ValueError`` naming the file and the reason (MMCV alone
  gives an unnamed ``cv2.error`` for an empty file).

EXIF orientation: MMDetection's default loader (``color_type='color'``)
turns a photo stored sideways upright, as detectron2's ``read_image`` does
(centermask2 then stops on a size mismatch) and as tools that show the photo
upright (labelme, web annotation tools in current browsers) label it; the
annotation file must then give the upright size. Annotations drawn on the
stored pixels need ``color_type='color_ignore_orientation'`` in the
pipelines; the checks follow whichever the pipeline uses.
"""
import difflib
import json
from typing import Any, List, Optional, Sequence, Set, Tuple

import cv2
import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmdet.datasets import CocoDataset
from mmdet.datasets.api_wrappers import COCO
from mmdet.datasets.transforms import LoadAnnotations
from mmdet.registry import DATASETS
from mmengine.logging import print_log
from PIL import Image
from pycocotools import mask as mask_utils

from mmcentermask.utils.image_check import (ImageHeader,
                                            loader_applies_orientation,
                                            read_header, unreadable_reason)
from .coco_format import (DROP_REASONS, AnnotationProblem, ProblemLog,
                          annotation_problem, check_structure, valid_polygons)

#: Report words of the counts that are not drop reasons.
NOT_USED = 'annotations of categories not in metainfo.classes were not used'
RLE_CONVERTED = ('RLE masks were converted to polygons '
                 '(LoadAnnotations(poly2mask=False) would ignore them)')
NO_VALID_ANNOTATION = ('images have annotations but none valid (empty boxes, '
                       'unknown categories or invalid masks)')
#: Why an image's size differs from the annotation file's: the loader turns
#: it by its EXIF tag and the file gives the stored size; the loader does not
#: and the file gives the upright size; anything else.
STORED_SIZE, UPRIGHT_SIZE, OTHER_SIZE = 'stored', 'upright', 'other'
ANNOTATION_FIX = (
    'Fix the annotations (COCO format: bbox [x, y, width, height] in pixels '
    'of the image as loaded, width and height >= 1; area > 0; iscrowd 0 or '
    '1; segmentation a list of polygons [[x1, y1, x2, y2, x3, y3, ...]] or '
    'an RLE {"size": [height, width], "counts": ...}; image_id of an image '
    'of the file).')


class CheckedCOCO(COCO):
    """pycocotools' COCO that names its file on bad JSON, bad structure and
    unknown classes.

    Attributes:
        unattached (list[dict]): Annotations whose ``image_id`` no image has
            (pycocotools keeps them, MMDetection never reads them).
    """

    def __init__(self, annotation_file: Optional[str] = None) -> None:
        self.annotation_file = annotation_file
        super().__init__(annotation_file=None)
        self.unattached: List[dict] = []
        if annotation_file is not None:
            self.dataset = self._load_json(annotation_file)
            check_structure(self.dataset, annotation_file)
            self.createIndex()
            self.img_ann_map = self.imgToAnns
            self.cat_img_map = self.catToImgs
            self.unattached = [
                ann for ann in self.dataset.get('annotations', [])
                if ann['image_id'] not in self.imgs
            ]

    @staticmethod
    def _load_json(annotation_file: str) -> Any:
        with open(annotation_file) as f:
            try:
                return json.load(f)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f'Annotation file {annotation_file} is not valid JSON: '
                    f'{error.msg} at line {error.lineno}, column '
                    f'{error.colno}. Fix or regenerate the file (COCO format: '
                    'a JSON object with images, annotations and '
                    'categories).') from error

    def get_cat_ids(self, cat_names=[], sup_names=[], cat_ids=[]):
        if cat_names:
            known = [cat['name'] for cat in self.dataset.get('categories', [])]
            missing = [name for name in cat_names if name not in known]
            if missing:
                hints = []
                for name in missing:
                    close = difflib.get_close_matches(
                        name, known, n=3, cutoff=0.6)
                    hints.append(f'{name!r}' + (
                        f' (did you mean {", ".join(map(repr, close))}?)'
                        if close else ''))
                raise ValueError(
                    f'metainfo.classes names {len(missing)} class(es) that '
                    f'annotation file {self.annotation_file} does not have: '
                    f'{"; ".join(hints)}. Its categories are: '
                    f'{", ".join(map(repr, known))}. Fix the names in the '
                    'config (metainfo=dict(classes=...)); a name that is not '
                    'in the file would drop that class and shift the labels '
                    'of the others.')
        return super().get_cat_ids(cat_names, sup_names, cat_ids)


def _rle_to_polygons(rle: dict) -> List[List[float]]:
    """Outer and hole contours of an RLE mask as COCO polygons."""
    if isinstance(rle.get('counts'), list):
        rle = mask_utils.frPyObjects(rle, *rle['size'])
    bitmap = np.ascontiguousarray(mask_utils.decode(rle).astype(np.uint8))
    contours, _ = cv2.findContours(bitmap, cv2.RETR_CCOMP,
                                   cv2.CHAIN_APPROX_NONE)
    return [
        c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3
    ]


@DATASETS.register_module()
class CheckedCocoDataset(CocoDataset):
    """:class:`~mmdet.datasets.CocoDataset` with the checks listed above.

    Takes every argument of ``CocoDataset``, plus:

    Args:
        unknown_categories (str): ``'warn'`` (default) counts annotations whose
            ``category_id`` the file does not declare and reports them;
            ``'error'`` raises instead.
        rle_to_polygons (bool, optional): Convert non-crowd RLE masks to
            polygons. ``None`` (default): when the pipeline has
            ``LoadAnnotations`` with ``with_mask=True, poly2mask=False``.
        check_image_files (bool): Read the header of every image file while
            loading (no pixels decoded: 65-85 ms for 1,000 JPEGs on a local
            disk, about 10 s for COCO train2017's 118k images) and stop on
            missing or unreadable files and on sizes the annotation file gets
            wrong. Only for local files and when the pipeline has a
            ``LoadImageFromFile``. Each loaded sample is checked in any case
            (free). Defaults to True.
    """
    COCOAPI = CheckedCOCO

    def __init__(self,
                 *args,
                 unknown_categories: str = 'warn',
                 rle_to_polygons: Optional[bool] = None,
                 check_image_files: bool = True,
                 **kwargs) -> None:
        if unknown_categories not in ('warn', 'error'):
            raise ValueError(f"unknown_categories must be 'warn' or 'error', "
                             f'got {unknown_categories!r}')
        self.unknown_categories = unknown_categories
        self._rle_to_polygons = rle_to_polygons
        self.check_image_files = check_image_files
        super().__init__(*args, **kwargs)

    # -- the pipeline's loaders -------------------------------------------

    def _mask_loaders(self) -> List[LoadAnnotations]:
        transforms: Sequence = getattr(self.pipeline, 'transforms', [])
        return [
            t for t in transforms
            if isinstance(t, LoadAnnotations) and t.with_mask
        ]

    def _converts_rle(self) -> bool:
        if self._rle_to_polygons is not None:
            return self._rle_to_polygons
        return any(not t.poly2mask for t in self._mask_loaders())

    def _image_loader(self) -> Optional[LoadImageFromFile]:
        transforms: Sequence = getattr(self.pipeline, 'transforms', [])
        return next(
            (t for t in transforms if isinstance(t, LoadImageFromFile)), None)

    # -- annotations ----------------------------------------------------------

    def load_data_list(self) -> List[dict]:
        self.problems = ProblemLog()
        self._unknown_category_ids = set()
        self._annotations_read = 0
        self._needs_mask = bool(self._mask_loaders())
        self._convert_rle = self._converts_rle()
        self._file_cat_ids = None
        data_list = super().load_data_list()
        self._report()
        return data_list

    def _start_parsing(self) -> None:
        """Note the file's categories and its unattached annotations
        (``self.coco`` exists while the images are parsed)."""
        self._file_cat_ids = set(self.coco.getCatIds())
        self._annotations_read += len(self.coco.unattached)
        for ann in self.coco.unattached:
            self.problems.add(
                'unknown image',
                AnnotationProblem('unknown image', 'image_id',
                                  ann['image_id']).describe(ann, {}))

    def parse_data_info(self, raw_data_info: dict) -> dict:
        if self._file_cat_ids is None:
            self._start_parsing()
        image = raw_data_info['raw_img_info']
        raw_anns = raw_data_info['raw_ann_info']
        self._annotations_read += len(raw_anns)
        anns = [
            checked for checked in (self._checked_annotation(ann, image)
                                    for ann in raw_anns) if checked is not None
        ]
        info = super().parse_data_info(dict(raw_data_info, raw_ann_info=anns))
        if raw_anns and not info['instances']:
            self.problems.add('no valid annotation',
                              f"image {image['id']} ({image['file_name']!r})")
        return info

    def _checked_annotation(self, ann: dict, image: dict) -> Optional[dict]:
        """``ann`` as ``CocoDataset.parse_data_info`` should see it (invalid
        polygons removed, RLE converted), or ``None`` if dropped (counted)."""
        if ann.get('ignore', False):
            return ann
        cat = ann['category_id']
        if cat not in self._file_cat_ids:
            self._unknown_category_ids.add(cat)
            if self.unknown_categories == 'error':
                raise ValueError(
                    f'Annotation {ann["id"]} of image {image["id"]} '
                    f'({image["file_name"]!r}) in {self.ann_file} has '
                    f'category_id {cat!r}, which the file\'s categories do '
                    f'not declare ({sorted(self._file_cat_ids)}). Fix its '
                    'category_id or declare the category; '
                    "unknown_categories='warn' drops such annotations.")
            self.problems.add(
                'unknown category',
                AnnotationProblem('unknown category', 'category_id',
                                  cat).describe(ann, image))
            return None
        if cat not in self.cat_ids:
            self.problems.add('not in classes')
            return None
        problem = annotation_problem(ann, image['width'], image['height'],
                                     self._needs_mask)
        if problem is None:
            return self._with_valid_mask(ann, image)
        self.problems.add(problem.reason, problem.describe(ann, image))
        return None

    def _with_valid_mask(self, ann: dict, image: dict) -> Optional[dict]:
        """``ann`` with non-crowd RLE converted and bad polygons removed."""
        seg = ann.get('segmentation')
        if isinstance(
                seg, dict) and not ann.get('iscrowd', 0) and self._convert_rle:
            seg = _rle_to_polygons(seg)
            self.problems.add('RLE converted')
            ann = dict(ann, segmentation=seg)
            if not seg:
                self.problems.add('no polygon left')
                return None
        elif isinstance(seg, list) and seg:
            kept, dropped = valid_polygons(seg)
            for reason in dropped:
                self.problems.add(
                    reason,
                    AnnotationProblem(reason, 'segmentation',
                                      seg).describe(ann, image))
            if not kept:
                self.problems.add(
                    'no polygon left',
                    AnnotationProblem('no polygon left', 'segmentation',
                                      seg).describe(ann, image))
                return None
            if dropped:
                ann = dict(ann, segmentation=kept)
        return ann

    def _problem_lines(self, examples: int) -> List[str]:
        """One line per kind of dropped or unused annotation."""
        problems, lines = self.problems, []
        if problems.counts['unknown category']:
            ids = ', '.join(map(str, sorted(self._unknown_category_ids)))
            lines.append(
                problems.line(
                    'unknown category', 'annotations with a category_id the '
                    f'file does not declare (ids {ids}) were dropped',
                    examples))
        if problems.counts['not in classes']:
            lines.append(problems.line('not in classes', NOT_USED, 0))
        for reason, words in DROP_REASONS.items():
            if problems.counts[reason]:
                lines.append(
                    problems.line(reason, f'{words} were dropped', examples))
        if problems.counts['RLE converted']:
            lines.append(problems.line('RLE converted', RLE_CONVERTED, 0))
        return lines

    def _report(self) -> None:
        lines = self._problem_lines(examples=1)
        if self.problems.counts['no valid annotation']:
            lines.append(
                self.problems.line('no valid annotation', NO_VALID_ANNOTATION))
        if lines:
            self._warn('; '.join(lines) + '.')

    # -- the training set -----------------------------------------------------

    def filter_data(self) -> List[dict]:
        if not self.test_mode and not any(not instance['ignore_flag']
                                          for info in self.data_list
                                          for instance in info['instances']):
            raise ValueError(self._nothing_to_learn_message())
        data_list = super().filter_data()
        if not data_list and not self.test_mode:
            raise ValueError(
                f'No training image left in {self.ann_file}: '
                f'{len(self.data_list)} images read, none with a usable '
                f'annotation after filter_cfg={self.filter_cfg} (classes '
                f'{tuple(self.metainfo["classes"])}). Check that the file has '
                'annotations of these classes with boxes of at least 1x1 px, '
                'and that filter_cfg.min_size is not larger than the images.')
        if self.check_image_files:
            self._check_image_files(data_list)
        return data_list

    def _nothing_to_learn_message(self) -> str:
        """Why no image of the training set has an object to learn."""
        classes = tuple(self.metainfo['classes'])
        head = (f'No training image left in {self.ann_file}: '
                f'{len(self.data_list)} images read, none with a usable '
                f'annotation of classes {classes}')
        lines = self._problem_lines(examples=3)
        # no instance is a positive one here: each is a crowd region
        crowd = sum(len(info['instances']) for info in self.data_list)
        if crowd:
            lines.append(f'{crowd} crowd regions (iscrowd=1) train as ignored '
                         'areas only')
        if not lines:
            return (f'{head}: the file has no annotation of its images. '
                    'Training would see background only. Add annotations, or '
                    'check ann_file.')
        fixes = []
        if any(self.problems.counts[reason] for reason in DROP_REASONS):
            fixes.append(ANNOTATION_FIX)
        if not fixes or self.problems.counts['not in classes']:
            fixes.append('Check that metainfo.classes names the categories '
                         'the file annotates.')
        return (f'{head}; of its {self._annotations_read} annotations:\n' +
                '\n'.join(f'  - {line}' for line in lines) +
                '\nTraining would see background only (box and mask losses '
                '0). ' + ' '.join(fixes))

    # -- image files ----------------------------------------------------------

    def _check_image_files(self, data_list: List[dict]) -> None:
        """Read each image's header: missing or unreadable files and sizes
        that the annotation file gets wrong stop loading."""
        loader = self._image_loader()
        if loader is None or loader.file_client_args is not None or (
                loader.backend_args
                and loader.backend_args.get('backend', 'local') != 'local'):
            return
        found, causes = ProblemLog(examples_per_kind=5), set()
        for info in data_list:
            self._check_image_file(info, loader, found, causes)
        sections = []
        if found.counts['missing']:
            sections.append(
                _section(
                    found, 'missing', f'of {len(data_list)} images do not '
                    'exist', 'check data_root and data_prefix.img (now '
                    f"{self.data_prefix.get('img')!r}), or remove these "
                    'images from the annotation file.'))
        if found.counts['unreadable']:
            sections.append(
                _section(
                    found, 'unreadable', f'of {len(data_list)} images cannot '
                    'be read', 'replace these files or remove the images from '
                    'the annotation file.'))
        if sections and loader.ignore_empty:
            self._warn(' '.join(sections) + '\nLoadImageFromFile('
                       'ignore_empty=True) skips them.')
            sections = []
        if found.counts['size']:
            sections.append(
                _section(
                    found, 'size', f'of {len(data_list)} images are not the '
                    'size the annotation file gives (their boxes and masks '
                    'would be out of place)', _size_fix(causes)))
        if sections:
            raise ValueError(f'Image files of {self.ann_file}:\n' +
                             '\n'.join(sections))
        if found.counts['unconfirmed']:
            self._warn_unconfirmed_orientation(found, loader)

    def _check_image_file(self, info: dict, loader: LoadImageFromFile,
                          found: ProblemLog, causes: Set[str]) -> None:
        """Log in ``found`` whether the image of ``info`` is missing,
        unreadable, of another size (its cause added to ``causes``) or has an
        orientation its size cannot confirm."""
        path = info['img_path']
        try:
            header = read_header(path)
        except FileNotFoundError:
            found.add('missing', f"image {info['img_id']}: {path}")
            return
        except OSError:
            reason = unreadable_reason(path)
            if reason is not None:
                found.add(
                    'unreadable', f'Image {path} (in {self.ann_file}) cannot '
                    f'be read: {reason}')
            return
        except Image.DecompressionBombError:
            return  # too large for Pillow's header check; the sample check
        loaded = header.loaded_size(
            loader_applies_orientation(loader.color_type,
                                       loader.imdecode_backend))
        if loaded is not None and loaded != (info['width'], info['height']):
            cause, line = self._size_mismatch(info, loaded, header)
            found.add('size', line)
            causes.add(cause)
        elif header.orientation != 1 and (not header.transposes
                                          or header.width == header.height):
            found.add(
                'unconfirmed', f"image {info['img_id']} ({path}): "
                f'orientation {header.orientation}, {header.turn}')

    def _warn_unconfirmed_orientation(self, found: ProblemLog,
                                      loader: LoadImageFromFile) -> None:
        """Warn about orientation tags that no size can confirm."""
        if loader_applies_orientation(loader.color_type,
                                      loader.imdecode_backend):
            action = ('applies it, so their annotations must have been drawn '
                      'on the upright picture; if not, use LoadImageFromFile('
                      "color_type='color_ignore_orientation')")
        else:
            action = ('ignores it, so their annotations must have been drawn '
                      'on the stored pixels; if not, use LoadImageFromFile('
                      "color_type='color')")
        self._warn(
            found.line(
                'unconfirmed', 'images carry an EXIF orientation tag their '
                'width/height cannot confirm (a mirror, a 180-degree turn or '
                'a square picture)') + f'; {_describe(loader)} {action}.')

    def _warn(self, message: str) -> None:
        print_log(
            f'{type(self).__name__} {self.ann_file}: {message}',
            logger='current',
            level=30)

    def _size_mismatch(self, info: dict, loaded: Tuple[int, int],
                       header: Optional[ImageHeader]) -> Tuple[str, str]:
        """``(cause, line)``: the cause (:data:`STORED_SIZE`,
        :data:`UPRIGHT_SIZE` or :data:`OTHER_SIZE`) and one line naming the
        image, both sizes and whether the EXIF orientation tag explains the
        difference."""
        loader = self._image_loader()
        annotated = (info['width'], info['height'])
        line = (f"image {info['img_id']} ({info['img_path']}): the annotation "
                f'file says {annotated[0]}x{annotated[1]} (width x height), '
                f'the image loads as {loaded[0]}x{loaded[1]}')
        if header is None or not header.transposes or annotated != (loaded[1],
                                                                    loaded[0]):
            return OTHER_SIZE, line + ' (not an EXIF rotation)'
        if loader is not None and loader_applies_orientation(
                loader.color_type, loader.imdecode_backend):
            return STORED_SIZE, (
                line + f': {_describe(loader)} applies its EXIF orientation '
                f'{header.orientation} ({header.turn}); the file gives the '
                'stored size')
        return UPRIGHT_SIZE, (
            line + f': {_describe(loader)} ignores its EXIF orientation '
            f'{header.orientation} ({header.turn}); the file gives the '
            'upright size')

    # -- samples --------------------------------------------------------------

    def prepare_data(self, idx: int) -> Any:
        data_info = self.get_data_info(idx)
        info = {
            key: data_info.get(key)
            for key in ('img_id', 'img_path', 'width', 'height')
        }
        try:
            data = self.pipeline(data_info)
        except Exception as error:
            path = info['img_path']
            reason = unreadable_reason(path) if isinstance(path, str) else None
            if reason is None:
                raise
            raise ValueError(
                f'Image {path} (in {self.ann_file}) cannot be read: {reason}. '
                'Replace the file or remove the image from the '
                'annotation file.') from error
        if data is not None:
            self._check_loaded_size(info, data)
        return data

    def _check_loaded_size(self, info: dict, data: Any) -> None:
        """Raise if the decoded image is not the annotation file's size."""
        samples = data.get('data_samples') if isinstance(data, dict) else None
        sample = samples[0] if isinstance(samples, list) and samples else (
            samples)
        shape = getattr(sample, 'metainfo', {}).get('ori_shape')
        if shape is None or info['width'] is None:
            return
        loaded = (int(shape[1]), int(shape[0]))
        if loaded == (info['width'], info['height']):
            return
        try:
            header = read_header(info['img_path'])
        except (OSError, Image.DecompressionBombError):
            header = None
        cause, line = self._size_mismatch(info, loaded, header)
        raise ValueError(f'Image files of {self.ann_file}: {line}\n'
                         f'Fix: {_size_fix({cause})}')


def _describe(loader: Optional[LoadImageFromFile]) -> str:
    """``LoadImageFromFile(color_type='color', imdecode_backend='cv2')``."""
    if loader is None:
        return 'the image loader'
    return (f'LoadImageFromFile(color_type={loader.color_type!r}, '
            f'imdecode_backend={loader.imdecode_backend!r})')


def _size_fix(causes: Set[str]) -> str:
    """The fix for size mismatches of the given causes."""
    fixes = []
    if STORED_SIZE in causes:
        fixes.append(
            'Sideways-stored photos: if the annotations were drawn on the '
            'stored pixels (the annotation tool ignored the orientation tag), '
            "load them as stored: LoadImageFromFile(color_type='color_ignore_"
            "orientation') in every pipeline (train, val, test); if they were "
            'drawn on the upright picture, the width and height in the file '
            'are swapped: correct them.')
    if UPRIGHT_SIZE in causes:
        fixes.append(
            'Sideways-stored photos: if the annotations were drawn on the '
            "upright picture, let the loader turn them: LoadImageFromFile("
            "color_type='color') in every pipeline; if they were drawn on the "
            'stored pixels, the width and height in the file are swapped: '
            'correct them.')
    if OTHER_SIZE in causes:
        fixes.append(
            "Other sizes: write each image's real width and height into the "
            'annotation file, or use the image files the annotations were '
            'made on (a resized picture puts every box in the wrong place).')
    return ' '.join(fixes)


def _section(found: ProblemLog, kind: str, head: str, fix: str) -> str:
    """'<count> <head>:', the examples of ``kind`` one a line, 'Fix: ...'."""
    shown = found.examples[kind]
    more = found.counts[kind] - len(shown)
    return (f'{found.counts[kind]} {head}:\n' + ''.join(f'  - {line}\n'
                                                        for line in shown) +
            (f'  - and {more} more\n' if more else '') + f'Fix: {fix}')
