"""``CocoPanopticDataset`` that checks the categories of its annotation file
against the config's classes.

MMDetection's :class:`~mmdet.datasets.CocoPanopticDataset` maps the file's
categories to labels by name, in the file's order, and indexes that map with
each segment's ``category_id``. Three mistakes then go wrong without a word
or with a bare ``KeyError: 183``:

* **a class name of the config that the file does not have** (a typo): the
  class is dropped and every later label shifts;
* **a category order in the file other than the config's** (things first
  for MMDetection's panoptic heads): labels are permuted;
* **a segment whose category is not among the config's classes** (declared
  in the file or not): a bare ``KeyError`` from deep inside loading.

:class:`CheckedCocoPanopticDataset` takes the labels from the config's
order (``thing_classes`` then ``stuff_classes``) whatever the file's order,
and raises ``ValueError`` naming the file, the names (with the file's
closest ones), a thing class the file marks as stuff or the other way
round, and the first segments of unknown categories (image, segment id,
category) with the fix; ``unknown_categories='ignore'`` makes those
segments void (unlabeled, ignored by the losses and PQ) instead and
reports their count.
"""
import difflib
import logging
from collections import Counter
from typing import List

from mmdet.datasets import CocoPanopticDataset
from mmdet.registry import DATASETS
from mmengine.logging import print_log

#: ways to treat segments whose category is not among the classes
UNKNOWN_CATEGORY_CHOICES = ('error', 'ignore')
#: segments of unknown categories named in an error or warning
NAMED_SEGMENTS = 5


@DATASETS.register_module()
class CheckedCocoPanopticDataset(CocoPanopticDataset):
    """:class:`~mmdet.datasets.CocoPanopticDataset` with the category checks
    of the module docstring.

    Args:
        unknown_categories (str): ``'error'`` (default): a segment whose
            ``category_id`` is not one of ``metainfo.classes`` stops loading;
            ``'ignore'``: such segments are left out of ``segments_info``
            (void) and counted in a warning.
        **kwargs: :class:`~mmdet.datasets.CocoPanopticDataset` arguments.
    """

    def __init__(self, *args, unknown_categories: str = 'error',
                 **kwargs) -> None:
        if unknown_categories not in UNKNOWN_CATEGORY_CHOICES:
            raise ValueError(
                f'unknown_categories={unknown_categories!r} is not one of '
                f'{UNKNOWN_CATEGORY_CHOICES}')
        self.unknown_categories = unknown_categories
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> List[dict]:
        """The parent's loading, with the categories checked once the file
        is read and the segments of each image as they are parsed."""
        self._categories_checked = False
        self._unknown_segments: List[str] = []
        self._unknown_counts: Counter = Counter()
        data_list = super().load_data_list()
        if self._unknown_counts:
            print_log(
                f'{self.ann_file}: {sum(self._unknown_counts.values())} '
                'segments of categories not in metainfo.classes are void '
                f"(unknown_categories='ignore'), by category id: "
                f'{dict(self._unknown_counts)}; the first: '
                f'{"; ".join(self._unknown_segments)}',
                logger='current',
                level=logging.WARNING)
        return data_list

    def parse_data_info(self, raw_data_info: dict) -> dict:
        """Check (and with ``'ignore'`` drop) the image's segments of
        unknown categories, then parse as the parent."""
        if not self._categories_checked:
            self._label_categories_by_name()
            self._categories_checked = True
        known = [
            ann for ann in raw_data_info['raw_ann_info']
            if self._is_known(ann, raw_data_info['raw_img_info'])
        ]
        return super().parse_data_info(
            dict(raw_data_info, raw_ann_info=known))

    def _label_categories_by_name(self) -> None:
        """``cat_ids`` / ``cat2label`` in the order of ``metainfo.classes``,
        after checking that the file has every class with the right
        thing/stuff kind.

        Raises:
            ValueError: A class the file does not have, or one whose
                ``isthing`` contradicts ``thing_classes``/``stuff_classes``.
        """
        by_name = {cat['name']: cat for cat in self.coco.cats.values()}
        classes = list(self.metainfo['classes'])
        missing = [name for name in classes if name not in by_name]
        if missing:
            hints = {
                name: difflib.get_close_matches(name, by_name, n=3)
                for name in missing
            }
            raise ValueError(
                f'{self.ann_file} has no category named {missing} of '
                f'metainfo.classes (closest names in the file: {hints}); '
                'fix the names in the config\'s metainfo (thing_classes, '
                'stuff_classes) or in the file\'s categories')
        things = set(self.metainfo.get('thing_classes', ()))
        wrong_kind = [
            f"{name!r} (isthing={by_name[name].get('isthing')})"
            for name in classes
            if bool(by_name[name].get('isthing')) != (name in things)
        ]
        if wrong_kind:
            raise ValueError(
                f'{self.ann_file}: categories {wrong_kind} are things in the '
                'file but stuff_classes in the config, or the other way '
                'round; move them to the right list of metainfo or fix '
                'isthing in the file')
        self.cat_ids = [by_name[name]['id'] for name in classes]
        self.cat2label = {
            cat_id: label
            for label, cat_id in enumerate(self.cat_ids)
        }

    def _is_known(self, ann: dict, img_info: dict) -> bool:
        """Whether the segment's category is one of the classes; otherwise
        raise (``'error'``) or count it (``'ignore'``)."""
        category_id = ann.get('category_id')
        if category_id in self.cat2label:
            return True
        category = self.coco.cats.get(category_id)
        what = (f"category {category_id} ({category['name']!r}, declared in "
                'the file but not in metainfo.classes)' if category else
                f'category {category_id} (not among the file\'s categories)')
        where = (f"image {img_info.get('file_name')!r}, segment "
                 f"{ann.get('id')}: {what}")
        if self.unknown_categories == 'error':
            raise ValueError(
                f'{self.ann_file}: {where}. Add the category to the '
                "config's metainfo (thing_classes or stuff_classes, with "
                "num_classes / num_stuff_classes), relabel those segments, "
                "or set the dataset's unknown_categories='ignore' to make "
                'them void.')
        self._unknown_counts[category_id] += 1
        if len(self._unknown_segments) < NAMED_SEGMENTS:
            self._unknown_segments.append(where)
        return False
