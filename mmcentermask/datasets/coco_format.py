"""What a COCO instance annotation file must hold, and what can be wrong.

A COCO file (https://cocodataset.org/#format-data) is a JSON object with

* ``images``: ``id`` (int, unique), ``file_name`` (str, unique), ``width``
  and ``height`` (int > 0, pixels);
* ``categories``: ``id`` (int, unique), ``name`` (str, unique);
* ``annotations`` (absent in test-set image lists): ``id`` (int, unique),
  ``image_id`` and ``category_id`` (int), ``bbox`` ``[x, y, width, height]``
  (pixels, top-left corner), ``area`` (> 0), ``iscrowd`` (0 or 1, 0 when
  absent), ``segmentation``: a list of polygons ``[[x1, y1, x2, y2, ...],
  ...]`` or an RLE ``{'size': [height, width], 'counts': str | [int]}``.

Two kinds of problems:

* **structural** ones leave the file without a meaning: a missing or wrongly
  typed key of an image, category or annotation, duplicate ids or names.
  pycocotools keeps the last of two entries with the same id and fails with a
  bare ``KeyError`` on a missing key. :func:`check_structure` raises one
  ``ValueError`` with the count, the first entries and the fix of each kind.
* problems of **one annotation** (a box or mask that cannot train, an
  ``image_id`` no image has) drop that annotation:
  :func:`annotation_problem` names the field, value and reason;
  :func:`valid_polygons` drops the polygons that cannot be drawn.
  :class:`ProblemLog` counts them with the first examples for the report.
"""
import math
import reprlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

#: Why an annotation (or a polygon) is dropped: reason key -> the words after
#: the count in the report ("3 <words> were dropped").
DROP_REASONS = {
    'unknown image':
    'annotations whose image_id no image has',
    'iscrowd':
    'annotations whose iscrowd is not 0 or 1',
    'bbox format':
    'annotations whose bbox is not 4 numbers [x, y, width, height]',
    'non-finite box':
    'annotations with a NaN/infinite box',
    'box under 1 px':
    'annotations with a box narrower or lower than 1 px',
    'box outside image':
    'annotations with a box outside the image',
    'area':
    'annotations whose area is missing, not a number or not > 0',
    'no segmentation':
    'annotations without a segmentation (the pipeline loads masks)',
    'segmentation type':
    'annotations whose segmentation is neither a list of polygons nor an '
    'RLE dict',
    'flat polygon':
    'annotations whose segmentation is one flat list of numbers, not a list '
    'of polygons [[x1, y1, ...]]',
    'RLE format':
    "annotations whose RLE mask lacks a 'size' [height, width] or valid "
    "'counts'",
    'RLE size':
    'annotations whose RLE size is not the image [height, width]',
    'RLE undecodable':
    'annotations whose compressed RLE counts are not an RLE string',
    'RLE counts sum':
    'annotations whose RLE runs do not add up to height x width',
    'polygon values':
    'polygons that are not flat lists of numbers',
    'non-finite polygon':
    'polygons with NaN/infinite coordinates',
    'polygon with < 3 points':
    'polygons with fewer than 3 points',
    'no polygon left':
    'annotations left without a valid polygon',
}
#: The fix printed under structural problems.
STRUCTURE_FIX = (
    'Fix the file (COCO format, https://cocodataset.org/#format-data): '
    'every image needs a unique integer id, a unique file_name and integer '
    'width and height > 0 (pixels of the picture as loaded); every category '
    'a unique integer id and a unique name; every annotation a unique '
    'integer id and integer image_id and category_id.')
_SHORT = reprlib.Repr()
_SHORT.maxlist = _SHORT.maxdict = 6
_SHORT.maxstring = _SHORT.maxother = 40


def short_repr(value: Any) -> str:
    """``repr(value)`` cut to about 80 characters (long polygons, RLEs)."""
    return _SHORT.repr(value)


#: JSON number types (``bool`` is not one of them: ``type(True) is bool``).
_NUMBER_TYPES = frozenset((int, float))


def is_int(value: Any) -> bool:
    """A JSON integer (``True``/``False`` are not)."""
    return type(value) is int


class ProblemLog:
    """Counts of problems by kind, with the first few examples of each.

    Args:
        examples_per_kind (int): Examples kept per kind. Defaults to 3.
    """

    def __init__(self, examples_per_kind: int = 3) -> None:
        self.counts: Counter = Counter()
        self.examples: Dict[str, List[str]] = defaultdict(list)
        self.examples_per_kind = examples_per_kind

    def add(self, kind: str, example: Optional[str] = None) -> None:
        """Count one problem of ``kind``; ``example`` names the entry."""
        self.counts[kind] += 1
        if example and len(self.examples[kind]) < self.examples_per_kind:
            self.examples[kind].append(example)

    def __bool__(self) -> bool:
        return bool(self.counts)

    def line(self, kind: str, words: str, examples: int = 1) -> str:
        """``'<count> <words> (e.g. <first examples>)'``."""
        shown = '; '.join(self.examples[kind][:examples])
        return f'{self.counts[kind]} {words}' + (f' (e.g. {shown})'
                                                 if shown else '')


@dataclass(frozen=True)
class AnnotationProblem:
    """Why one annotation is dropped.

    Args:
        reason (str): The kind of problem: a key of :data:`DROP_REASONS`
            or ``'unknown category'``.
        field (str): The annotation key at fault, e.g. ``'bbox'``.
        value (Any): Its value (shortened in messages).
        context (str): What makes the value wrong, when the value alone does
            not say, e.g. ``'image 640x480'``. Defaults to ``''``.
    """
    reason: str
    field: str
    value: Any
    context: str = ''

    def describe(self, ann: dict, image: dict) -> str:
        """``annotation 12 of image 3 ('a.jpg'): bbox=[10, 10, 0, 0]``."""
        name = image.get('file_name')
        return (f'annotation {ann.get("id")} of image {ann.get("image_id")}' +
                (f' ({name!r})' if name else '') +
                f': {self.field}={short_repr(self.value)}' +
                (f' ({self.context})' if self.context else ''))


def _entry_problems(entries: List[Any], kind: str, keys: Dict[str, Tuple[Any,
                                                                         str]],
                    log: ProblemLog) -> List[dict]:
    """Log entries that are not objects or whose ``keys`` are missing or
    invalid (``keys``: name -> (predicate, what it must be)); return the
    entries whose keys are all valid."""
    valid = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            log.add(f'{kind} entries that are not JSON objects',
                    f'{kind}[{index}]={short_repr(entry)}')
            continue
        name = f'{kind}[{index}]' + (f' (id {entry["id"]!r})'
                                     if 'id' in entry else '')
        ok = True
        for key, (predicate, what) in keys.items():
            if key not in entry:
                log.add(f"{kind} without '{key}'", name)
                ok = False
            elif not predicate(entry[key]):
                log.add(f"{kind} whose '{key}' is not {what}",
                        f'{name}: {key}={short_repr(entry[key])}')
                ok = False
        if ok:
            valid.append(entry)
    return valid


def _duplicates(entries: List[dict], key: str, kind: str, consequence: str,
                log: ProblemLog) -> None:
    """Log values of ``key`` that more than one entry has."""
    counts = Counter(entry[key] for entry in entries)
    for value, count in counts.items():
        if count > 1:
            log.add(f'duplicate {kind} {key}s ({consequence})',
                    f'{key} {value!r} x{count}')


def check_structure(dataset: Any, path: str) -> None:
    """Raise ``ValueError`` if ``dataset`` (a loaded COCO file) cannot be
    read as one: a missing or wrongly typed key, duplicate ids or names.

    Args:
        dataset (Any): The parsed JSON of the file.
        path (str): The file, for the message.
    """
    if not isinstance(dataset, dict):
        raise ValueError(
            f'Annotation file {path} holds a JSON {type(dataset).__name__}, '
            'not an object with images, annotations and categories. ' +
            STRUCTURE_FIX)
    log = ProblemLog()
    for key in ('images', 'categories', 'annotations'):
        if key == 'annotations' and key not in dataset:
            continue  # test-set image lists have no annotations
        if not isinstance(dataset.get(key), list):
            log.add(f"top-level '{key}' missing or not a list",
                    f'{key}={short_repr(dataset.get(key))}')
    if not log:
        positive = (lambda v: is_int(v) and v > 0)
        name = (lambda v: isinstance(v, str) and v != '')
        images = _entry_problems(
            dataset['images'], 'images', {
                'id': (is_int, 'an integer'),
                'file_name': (name, 'a file name'),
                'width': (positive, 'an integer > 0'),
                'height': (positive, 'an integer > 0')
            }, log)
        _duplicates(images, 'id', 'image',
                    'pycocotools keeps only the last of them', log)
        _duplicates(images, 'file_name', 'image',
                    'one picture split over several images', log)
        categories = _entry_problems(dataset['categories'], 'categories', {
            'id': (is_int, 'an integer'),
            'name': (name, 'a name')
        }, log)
        _duplicates(categories, 'id', 'category',
                    'pycocotools keeps only the last of them', log)
        _duplicates(categories, 'name', 'category',
                    'one class name, two labels', log)
        annotations = _entry_problems(
            dataset.get('annotations', []), 'annotations', {
                'id': (is_int, 'an integer'),
                'image_id': (is_int, 'an integer'),
                'category_id': (is_int, 'an integer')
            }, log)
        _duplicates(annotations, 'id', 'annotation',
                    'pycocotools mixes them up', log)
    if log:
        lines = [
            '  - ' + log.line(kind, kind, examples=3) for kind in log.counts
        ]
        raise ValueError(f'Annotation file {path} is not a usable COCO '
                         'file:\n' + '\n'.join(lines) + '\n' + STRUCTURE_FIX)


def annotation_problem(ann: dict, width: int, height: int,
                       needs_mask: bool) -> Optional[AnnotationProblem]:
    """Why ``ann`` cannot train, or ``None``.

    Checks ``iscrowd``, ``bbox`` (format, finite, at least 1x1 px, overlaps
    the image, as MMDetection's ``CocoDataset`` requires), ``area`` and the
    form of ``segmentation`` (RLE size against the image); polygons are
    checked one by one by :func:`valid_polygons`.

    Args:
        ann (dict): One entry of ``annotations``.
        width (int): Width of its image, pixels.
        height (int): Height of its image, pixels.
        needs_mask (bool): Whether the pipeline loads masks (an annotation
            without segmentation then fails in ``LoadAnnotations``).
    """
    # exact type checks: about 5 us per annotation, 0.25 s for 50,000
    crowd = ann.get('iscrowd', 0)
    if type(crowd) not in (int, float, bool) or crowd not in (0, 1):
        return AnnotationProblem('iscrowd', 'iscrowd', crowd)
    box = ann.get('bbox')
    if (type(box) is not list or len(box) != 4
            or not set(map(type, box)) <= _NUMBER_TYPES):
        return AnnotationProblem('bbox format', 'bbox', box)
    if not all(map(math.isfinite, box)):
        return AnnotationProblem('non-finite box', 'bbox', box)
    x, y, w, h = box
    if w < 1 or h < 1:
        return AnnotationProblem('box under 1 px', 'bbox', box)
    if min(x + w, width) <= max(x, 0) or min(y + h, height) <= max(y, 0):
        return AnnotationProblem('box outside image', 'bbox', box,
                                 f'image {width}x{height}')
    area = ann.get('area')
    if not (type(area) in _NUMBER_TYPES and math.isfinite(area) and area > 0):
        return AnnotationProblem('area', 'area', area)
    seg = ann.get('segmentation')
    if not seg:
        return (AnnotationProblem('no segmentation', 'segmentation', seg)
                if needs_mask else None)
    if isinstance(seg, dict):
        return _rle_problem(seg, width, height)
    if not isinstance(seg, list):
        return AnnotationProblem('segmentation type', 'segmentation', seg)
    if not isinstance(seg[0], list):
        return AnnotationProblem('flat polygon', 'segmentation', seg)
    return None


def _rle_problem(rle: dict, width: int,
                 height: int) -> Optional[AnnotationProblem]:
    """Why an RLE mask does not fit its image, or ``None``.

    pycocotools decodes runs that do not add up to ``height x width`` into
    uninitialised or foreign memory, so the runs are checked here.
    """
    size, counts = rle.get('size'), rle.get('counts')
    if not (isinstance(size, list) and len(size) == 2
            and all(map(is_int, size)) and isinstance(counts, (str, list))):
        return AnnotationProblem('RLE format', 'segmentation', rle)
    if size != [height, width]:
        return AnnotationProblem('RLE size', 'segmentation.size', size,
                                 f'image height x width {height}x{width}')
    if isinstance(counts, str):
        runs = rle_string_runs(counts)
        if runs is None:
            return AnnotationProblem('RLE undecodable', 'segmentation.counts',
                                     counts)
    else:
        runs = np.asarray(counts)
        if runs.dtype.kind not in 'iu' or runs.ndim != 1:
            return AnnotationProblem('RLE format', 'segmentation.counts',
                                     counts)
    if (runs < 0).any() or runs.sum() != height * width:
        return AnnotationProblem(
            'RLE counts sum', 'segmentation.counts', counts,
            f'runs add up to {runs.sum()}, not {height}x{width}')
    return None


def rle_string_runs(counts: str) -> Optional[np.ndarray]:
    """Run lengths of a compressed COCO RLE string, ``None`` if malformed.

    The code of pycocotools' ``rleToString``: each run is a signed integer
    in groups of 5 bits, one character (``48 + bits``, bit 5 set when more
    follow) per group, low bits first; from the third run on, each is stored
    as the difference to the run two before.

    Args:
        counts (str): The ``counts`` of a compressed RLE.

    Returns:
        np.ndarray | None: Run lengths, shape (R,), int64.
    """
    try:
        codes = np.frombuffer(counts.encode('ascii'), np.uint8)
    except UnicodeEncodeError:
        return None
    bits = codes.astype(np.int64) - 48
    if len(bits) == 0:
        return np.zeros(0, np.int64)
    if (bits < 0).any() or (bits > 63).any() or bits[-1] & 0x20:
        return None
    last = (bits & 0x20) == 0  # the last character of a run
    starts = np.flatnonzero(np.r_[True, last[:-1]])
    lengths = np.diff(np.r_[starts, len(bits)])
    if lengths.max() > 12:  # more than 60 bits
        return None
    position = np.arange(len(bits)) - np.repeat(starts, lengths)
    runs = np.add.reduceat((bits & 0x1f) << (5 * position), starts)
    negative = (bits[last] & 0x10) != 0
    runs[negative] -= np.left_shift(1, 5 * lengths[negative])
    runs[1::2] = np.cumsum(runs[1::2])  # runs 3, 5, ... add run 1, 3, ...
    runs[2::2] = np.cumsum(runs[2::2])  # runs 4, 6, ... add run 2, 4, ...
    return runs


def valid_polygons(polygons: List[Any]) -> Tuple[List[Any], List[str]]:
    """The polygons of a segmentation list that can be drawn.

    A polygon must be a flat list of at least 6 finite numbers, an even
    count (``[x1, y1, x2, y2, x3, y3, ...]``).

    Returns:
        tuple: ``(kept polygons, reason key of each dropped polygon)``.
    """
    kept, dropped = [], []
    for polygon in polygons:
        try:
            values = np.asarray(polygon)
        except ValueError:  # ragged nesting
            values = np.asarray([None])
        if values.ndim != 1 or values.dtype.kind not in 'iuf':
            dropped.append('polygon values')
        elif not np.isfinite(values).all():
            dropped.append('non-finite polygon')
        elif len(values) < 6 or len(values) % 2:
            dropped.append('polygon with < 3 points')
        else:
            kept.append(polygon)
    return kept, dropped
