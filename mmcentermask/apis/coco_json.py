"""One image's detections as a COCO-format JSON document.

The document has the three lists of a COCO annotation file, so
``pycocotools.coco.COCO(path)`` opens it and ``document['annotations']`` is
also a valid COCO *results* list for ``COCO.loadRes``:

- ``images``: ``id`` 1, ``file_name``, ``height``, ``width``;
- ``categories``: ``id`` = label index + 1, ``name`` from the model's classes;
- ``annotations``: one per detection above the threshold, best first:
  ``bbox`` [x, y, width, height] in pixels of the image, ``score``,
  ``category_id``, ``segmentation`` as COCO RLE (``size`` [H, W],
  ``counts`` str), ``area`` (mask pixels; box area for a model without
  masks), ``iscrowd`` 0 and, when the model scores its masks (CenterMask's
  MaskIoU), ``mask_score``.
"""
from typing import Sequence

import numpy as np
import pycocotools.mask as mask_util
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

IMAGE_ID = 1


def coco_json(sample: DetDataSample, classes: Sequence[str], file_name: str,
              score_thr: float) -> dict:
    """The detections of ``sample`` scoring above ``score_thr`` (the
    visualizer's rule, so the document lists what is drawn).

    Args:
        sample (DetDataSample): With ``ori_shape`` and ``pred_instances``
            (``bboxes`` (n, 4) x1y1x2y2 pixels, ``scores`` (n, ),
            ``labels`` (n, ), optional ``masks`` (n, H, W) bool and
            ``mask_scores`` (n, )).
        classes (Sequence[str]): Class names, indexed by label.
        file_name (str): The image's name in ``images``.
        score_thr (float): Keep detections with a score above this.

    Returns:
        dict: ``images``, ``categories`` and ``annotations`` (see the module
        docstring), JSON-serialisable.
    """
    height, width = sample.ori_shape[:2]
    instances = sample.pred_instances.cpu().numpy()
    keep = np.flatnonzero(instances.scores > score_thr)
    keep = keep[np.argsort(-instances.scores[keep], kind='stable')]
    return dict(
        images=[
            dict(
                id=IMAGE_ID,
                file_name=file_name,
                height=int(height),
                width=int(width))
        ],
        categories=[
            dict(id=label + 1, name=name) for label, name in enumerate(classes)
        ],
        annotations=[
            _annotation(instances, index, number)
            for number, index in enumerate(keep, start=1)
        ])


def _annotation(instances: InstanceData, index: int,
                annotation_id: int) -> dict:
    """The COCO annotation of detection ``index`` of numpy ``instances``."""
    x1, y1, x2, y2 = (float(v) for v in instances.bboxes[index])
    annotation = dict(
        id=annotation_id,
        image_id=IMAGE_ID,
        category_id=int(instances.labels[index]) + 1,
        bbox=[x1, y1, x2 - x1, y2 - y1],
        score=float(instances.scores[index]),
        area=(x2 - x1) * (y2 - y1),
        iscrowd=0)
    if 'masks' in instances:
        rle = mask_util.encode(
            np.asfortranarray(instances.masks[index].astype(np.uint8)))
        annotation.update(
            segmentation=dict(
                size=[int(s) for s in rle['size']],
                counts=rle['counts'].decode('ascii')),
            area=int(mask_util.area(rle)))
    if 'mask_scores' in instances:
        annotation['mask_score'] = float(instances.mask_scores[index])
    return annotation
