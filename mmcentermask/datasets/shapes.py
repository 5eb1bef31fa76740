"""A small deterministic COCO-format instance-segmentation set of shapes.

Images are textured backgrounds with filled circles, rectangles and triangles
of varied sizes, aspect ratios and colours. Shapes may overlap (the one drawn
later occludes) and may be cut by the image border; some images are empty.
Each annotation is the *visible* part of a shape as polygons (one per
connected part), its tight box, and its pixel area, so the set exercises
occlusion, multi-part masks and truncation like COCO does.

:func:`make_panoptic_split` writes the COCO panoptic variant: the shapes are
the things, on background bands of three stuff textures.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

from ..evaluation.functional import id2rgb

CLASSES: Tuple[str, ...] = ('circle', 'rectangle', 'triangle')


def _shape_mask(kind: str, rng: np.random.Generator, h: int,
                w: int) -> np.ndarray:
    """Rasterise one random shape of ``kind`` on an (h, w) uint8 canvas."""
    mask = np.zeros((h, w), np.uint8)
    size = rng.uniform(0.08, 0.45) * min(h, w)
    # Centres may lie slightly outside the image so shapes touch the border.
    cx, cy = rng.uniform(-0.05 * w, 1.05 * w), rng.uniform(-0.05 * h, 1.05 * h)
    aspect = rng.uniform(0.4, 2.5)
    if kind == 'circle':
        axes = (max(2, int(size * aspect ** 0.5 / 2)),
                max(2, int(size / aspect ** 0.5 / 2)))
        cv2.ellipse(mask, (int(cx), int(cy)), axes, rng.uniform(0, 180), 0,
                    360, 1, -1)
    elif kind == 'rectangle':
        rect = ((cx, cy), (size * aspect ** 0.5, size / aspect ** 0.5),
                rng.uniform(0, 90))
        cv2.fillPoly(mask, [cv2.boxPoints(rect).astype(np.int32)], 1)
    else:
        angles = rng.uniform(0, 2 * np.pi) + np.array([0, 2.1, 4.2])
        angles += rng.uniform(-0.3, 0.3, 3)
        pts = np.stack([cx + size * aspect ** 0.5 * np.cos(angles) / 1.5,
                        cy + size / aspect ** 0.5 * np.sin(angles) / 1.5], 1)
        cv2.fillPoly(mask, [pts.astype(np.int32)], 1)
    return mask


def _polygons(mask: np.ndarray) -> List[List[float]]:
    """Outer contours of a binary mask as COCO polygons (>= 3 points)."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1).astype(float).tolist() for c in contours
            if len(c) >= 3]


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth random colour gradient plus noise, uint8 (h, w, 3)."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = rng.uniform(40, 200, 3)
    grad = rng.uniform(-60, 60, (2, 3))
    img = base + xx[..., None] * grad[0] + yy[..., None] * grad[1]
    img += rng.normal(0, 8, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def make_image(rng: np.random.Generator, h: int, w: int,
               num_shapes: int) -> Tuple[np.ndarray, List[Dict]]:
    """Draw one image and return it (BGR uint8) with its instances.

    Returns:
        tuple: ``(image, instances)``; each instance has ``category_id``
        (1-based), ``segmentation`` (polygons), ``bbox`` (xywh), ``area``.
    """
    img = _background(rng, h, w)
    masks, labels = [], []
    for _ in range(num_shapes):
        label = int(rng.integers(len(CLASSES)))
        mask = _shape_mask(CLASSES[label], rng, h, w)
        colour = rng.uniform(0, 255, 3)
        img[mask.astype(bool)] = (0.8 * colour + 0.2 * img[mask.astype(bool)])
        for prev in masks:  # the new shape occludes the earlier ones
            prev[mask.astype(bool)] = 0
        masks.append(mask)
        labels.append(label)
    instances = []
    for mask, label in zip(masks, labels):
        polys = _polygons(mask)
        area = int(mask.sum())
        if not polys or area < 16:
            continue
        ys, xs = np.nonzero(mask)
        x1, y1, x2, y2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        instances.append(dict(category_id=label + 1, segmentation=polys,
                              bbox=[float(x1), float(y1), float(x2 - x1),
                                    float(y2 - y1)],
                              area=float(area), iscrowd=0))
    return img, instances


def make_split(out_dir: str, split: str, num_images: int, seed: int,
               size_range: Sequence[int] = (160, 320),
               max_shapes: int = 5, empty_every: int = 8) -> str:
    """Write ``<out_dir>/<split>/*.png`` and ``annotations/<split>.json``.

    Args:
        out_dir (str): Dataset root.
        split (str): Split name, e.g. ``'train'``.
        num_images (int): Number of images.
        seed (int): Seed of the split; the same seed gives identical files.
        size_range (Sequence[int]): Min and max image side in pixels.
        max_shapes (int): Most shapes drawn in one image.
        empty_every (int): Every ``empty_every``-th image has no object
            (0 disables empty images).

    Returns:
        str: Path of the annotation file.
    """
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(out_dir, split), exist_ok=True)
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    images, annotations = [], []
    for i in range(num_images):
        h, w = (int(v) for v in rng.integers(size_range[0],
                                             size_range[1] + 1, 2))
        empty = empty_every > 0 and i % empty_every == empty_every - 1
        num = 0 if empty else int(rng.integers(1, max_shapes + 1))
        img, instances = make_image(rng, h, w, num)
        name = f'{split}_{i:04d}.png'
        cv2.imwrite(osp.join(out_dir, split, name), img)
        images.append(dict(id=i + 1, file_name=name, height=h, width=w))
        for inst in instances:
            annotations.append(dict(id=len(annotations) + 1, image_id=i + 1,
                                    **inst))
    coco = dict(images=images, annotations=annotations,
                categories=[dict(id=i + 1, name=n, supercategory='shape')
                            for i, n in enumerate(CLASSES)])
    ann_file = osp.join(out_dir, 'annotations', f'{split}.json')
    with open(ann_file, 'w') as f:
        json.dump(coco, f)
    return ann_file


# Panoptic mode: the background is split into bands of "stuff" textures and
# the shapes are the "things"; written as COCO panoptic PNGs and JSON.
STUFF_CLASSES: Tuple[str, ...] = ('smooth', 'stripes', 'checks')


def _stuff_texture(kind: str, rng: np.random.Generator, h: int,
                   w: int) -> np.ndarray:
    """A full (h, w, 3) uint8 texture of stuff class ``kind``: a smooth
    gradient, stripes at a random angle, or a checkerboard."""
    if kind == 'smooth':
        return _background(rng, h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    period = rng.uniform(6, 14)
    if kind == 'stripes':
        angle = rng.uniform(0, np.pi)
        phase = (xx * np.cos(angle) + yy * np.sin(angle)) / period
        pattern = np.floor(phase) % 2
    else:
        pattern = (np.floor(xx / period) + np.floor(yy / period)) % 2
    colours = rng.uniform(30, 225, (2, 3))
    img = colours[pattern.astype(int)] + rng.normal(0, 6, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _stuff_regions(rng: np.random.Generator, h: int,
                   w: int) -> Tuple[np.ndarray, List[int]]:
    """Split the image into 1-3 bands along a random direction.

    Returns:
        tuple: (h, w) int band index per pixel, and the stuff label
        (0-based, distinct) of each band.
    """
    num = int(rng.integers(1, len(STUFF_CLASSES) + 1))
    labels = [int(v) for v in rng.permutation(len(STUFF_CLASSES))[:num]]
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:h, 0:w]
    position = xx * np.cos(angle) + yy * np.sin(angle)
    cuts = np.sort(rng.uniform(0.25, 0.75, num - 1))
    low, high = position.min(), position.max()
    bands = np.searchsorted(low + cuts * (high - low), position, side='right')
    return bands, labels


def _segment_info(segment_id: int, category_id: int, mask: np.ndarray) -> Dict:
    """A COCO panoptic ``segments_info`` entry of a binary mask."""
    ys, xs = np.nonzero(mask)
    x1, y1 = int(xs.min()), int(ys.min())
    return dict(
        id=segment_id,
        category_id=category_id,
        iscrowd=0,
        bbox=[x1, y1, int(xs.max()) + 1 - x1,
              int(ys.max()) + 1 - y1],
        area=int(mask.sum()))


def make_panoptic_image(
        rng: np.random.Generator, h: int, w: int,
        num_shapes: int) -> Tuple[np.ndarray, np.ndarray, List[Dict]]:
    """Draw one panoptic image: stuff bands, then shapes on top.

    Category ids: the shapes (things) 1..3 as :data:`CLASSES`, the stuff
    classes 4..6 as :data:`STUFF_CLASSES`. Shape parts smaller than 16
    pixels are left VOID (id 0), as unlabelled pixels in COCO.

    Returns:
        tuple: ``(image, ids, segments_info)``: the BGR uint8 (h, w, 3)
        image, the (h, w) int64 segment ids (1..K, 0 = VOID) and one COCO
        panoptic segment entry per id.
    """
    bands, stuff_labels = _stuff_regions(rng, h, w)
    img = np.empty((h, w, 3), np.uint8)
    label_map = np.empty((h, w), np.int64)  # category id per pixel
    for band, label in enumerate(stuff_labels):
        region = bands == band
        img[region] = _stuff_texture(STUFF_CLASSES[label], rng, h, w)[region]
        label_map[region] = len(CLASSES) + label + 1
    masks, labels = [], []
    for _ in range(num_shapes):
        label = int(rng.integers(len(CLASSES)))
        mask = _shape_mask(CLASSES[label], rng, h, w).astype(bool)
        img[mask] = 0.8 * rng.uniform(0, 255, 3) + 0.2 * img[mask]
        for prev in masks:  # the new shape occludes the earlier ones
            prev[mask] = False
        masks.append(mask)
        labels.append(label)
    covered = np.zeros((h, w), bool)
    for mask in masks:
        covered |= mask
    ids = np.zeros((h, w), np.int64)
    segments: List[Dict] = []
    for category_id in np.unique(label_map).tolist():
        stuff = (label_map == category_id) & ~covered
        if stuff.any():
            ids[stuff] = len(segments) + 1
            segments.append(
                _segment_info(len(segments) + 1, category_id, stuff))
    for mask, label in zip(masks, labels):
        if mask.sum() < 16:
            continue  # VOID
        ids[mask] = len(segments) + 1
        segments.append(_segment_info(len(segments) + 1, label + 1, mask))
    return img, ids, segments


def make_panoptic_split(out_dir: str,
                        split: str,
                        num_images: int,
                        seed: int,
                        size_range: Sequence[int] = (160, 320),
                        max_shapes: int = 5,
                        empty_every: int = 8) -> str:
    """Write a COCO panoptic split of shapes on stuff bands.

    Files: ``<out_dir>/<split>/<split>_NNNN.png`` (images),
    ``annotations/panoptic_<split>/<split>_NNNN.png`` (segment ids as
    ``R + 256 G + 256 ** 2 B``) and ``annotations/panoptic_<split>.json``
    (images, annotations with ``segments_info``, categories with
    ``isthing``). Arguments as :func:`make_split`; the same seed gives
    identical files.

    Returns:
        str: Path of the panoptic JSON.
    """
    rng = np.random.default_rng(seed)
    png_dir = osp.join(out_dir, 'annotations', f'panoptic_{split}')
    os.makedirs(osp.join(out_dir, split), exist_ok=True)
    os.makedirs(png_dir, exist_ok=True)
    images, annotations = [], []
    for i in range(num_images):
        h, w = (
            int(v) for v in rng.integers(size_range[0], size_range[1] + 1, 2))
        empty = empty_every > 0 and i % empty_every == empty_every - 1
        num = 0 if empty else int(rng.integers(1, max_shapes + 1))
        img, ids, segments = make_panoptic_image(rng, h, w, num)
        name = f'{split}_{i:04d}.png'
        cv2.imwrite(osp.join(out_dir, split, name), img)
        cv2.imwrite(osp.join(png_dir, name), id2rgb(ids)[..., ::-1])
        images.append(dict(id=i + 1, file_name=name, height=h, width=w))
        annotations.append(
            dict(image_id=i + 1, file_name=name, segments_info=segments))
    categories = [
        dict(id=i + 1, name=n, supercategory='shape', isthing=1)
        for i, n in enumerate(CLASSES)
    ] + [
        dict(
            id=len(CLASSES) + i + 1,
            name=n,
            supercategory='texture',
            isthing=0) for i, n in enumerate(STUFF_CLASSES)
    ]
    ann_file = osp.join(out_dir, 'annotations', f'panoptic_{split}.json')
    with open(ann_file, 'w') as f:
        json.dump(
            dict(
                images=images, annotations=annotations, categories=categories),
            f)
    return ann_file
