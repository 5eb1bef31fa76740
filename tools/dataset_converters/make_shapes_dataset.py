"""Write the bundled shapes dataset (COCO format, polygon masks, 3 classes).

    python tools/dataset_converters/make_shapes_dataset.py [--out data/shapes]
    python tools/dataset_converters/make_shapes_dataset.py --panoptic \\
        [--out data/shapes_panoptic]

Deterministic: the same arguments give byte-identical annotation files.
``--panoptic`` writes the COCO panoptic variant instead: the shapes are the
"things" (3 classes) on background bands of 3 "stuff" textures, as panoptic
PNGs (annotations/panoptic_<split>/) and JSON
(annotations/panoptic_<split>.json).
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(0,
                osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
from mmcentermask.datasets import make_panoptic_split, make_split  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--out',
        help='dataset root (default: data/shapes, with --panoptic '
        'data/shapes_panoptic)')
    parser.add_argument(
        '--panoptic',
        action='store_true',
        help='write the COCO panoptic variant (things and stuff)')
    parser.add_argument('--num-train', type=int, default=400)
    parser.add_argument('--num-val', type=int, default=60)
    parser.add_argument(
        '--min-size',
        type=int,
        default=128,
        help='smallest image side in pixels')
    parser.add_argument(
        '--max-size',
        type=int,
        default=224,
        help='largest image side in pixels')
    parser.add_argument(
        '--max-shapes', type=int, default=5, help='most objects in one image')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.panoptic:
        write_panoptic(args)
        return
    args.out = args.out or 'data/shapes'
    sizes = (args.min_size, args.max_size)
    for split, num, seed in (('train', args.num_train, 0), ('val',
                                                            args.num_val, 1)):
        ann_file = make_split(
            args.out,
            split,
            num,
            seed,
            size_range=sizes,
            max_shapes=args.max_shapes)
        with open(ann_file) as f:
            coco = json.load(f)
        empty = num - len({a['image_id'] for a in coco['annotations']})
        print(f'{split}: {num} images ({empty} without objects), '
              f'{len(coco["annotations"])} instances -> {ann_file}')


def write_panoptic(args: argparse.Namespace) -> None:
    """Write the panoptic train and val splits and print their sizes."""
    out = args.out or 'data/shapes_panoptic'
    for split, num, seed in (('train', args.num_train, 0), ('val',
                                                            args.num_val, 1)):
        ann_file = make_panoptic_split(
            out,
            split,
            num,
            seed,
            size_range=(args.min_size, args.max_size),
            max_shapes=args.max_shapes)
        with open(ann_file) as f:
            coco = json.load(f)
        segments = [s for a in coco['annotations'] for s in a['segments_info']]
        thing_ids = {c['id'] for c in coco['categories'] if c['isthing']}
        things = sum(s['category_id'] in thing_ids for s in segments)
        print(f'{split}: {num} images, {things} things and '
              f'{len(segments) - things} stuff segments -> {ann_file}')


if __name__ == '__main__':
    main()
