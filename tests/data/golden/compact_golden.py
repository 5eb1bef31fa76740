"""Write the compact golden data of this folder from the full centermask2
golden set (``../shared/golden`` next to the repository).

Usage (from the repository root)::

    python tests/data/golden/compact_golden.py ../shared/golden

Kept per inference file: every array except the large intermediate maps
(:data:`FULL_ONLY`); the network input is stored as the resized uint8 BGR
image ``input_image`` (3, h, w) instead of the float ``input_tensor``, which
:func:`input_tensor_of` rebuilds bit for bit. Training files, manifests,
``meta.json``, the merged configs, centermask2's COCO-evaluator results, the
images with their annotations and ``make_weights.py`` are copied unchanged.
"""
import fnmatch
import shutil
import sys
from pathlib import Path

import numpy as np

VARIANTS = ('lite_v19_slim_dw', 'v39')
INFER_IMAGES = ('coffee', 'moto_crop')
COPIED = ('manifest.json', 'meta.json', 'config_dump.yaml',
          'coco_instances_results.json', 'coco_eval.json')
#: arrays of the inference files that only the full set has
FULL_ONLY = ('input_tensor', '*__subset', '*__channels', 'fpn_p[3-7]',
             'fcos_cls_logits_p*', 'fcos_reg_p*', 'fcos_ctr_logits_p*',
             'roi_feats_first16ch', 'mask_logits_all_first4')
SIZE_DIVISOR = 32


def is_full_only(key: str) -> bool:
    """Whether ``key`` of an inference file is left out of the compact set."""
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in FULL_ONLY)


def input_image_of(data) -> np.ndarray:
    """The resized uint8 BGR image (3, h, w) the input tensor was made of."""
    height, width = (int(v) for v in data['resized_hw'])
    mean = data['pixel_mean'].astype(np.float32)[:, None, None]
    std = data['pixel_std'].astype(np.float32)[:, None, None]
    image = data['input_tensor'][:, :height, :width] * std + mean
    return np.round(image).astype(np.uint8)


def input_tensor_of(data) -> np.ndarray:
    """The normalised, zero-padded float32 input (3, Hp, Wp) of
    ``input_image`` (padding to a multiple of 32, as detectron2)."""
    image = data['input_image'].astype(np.float32)
    mean = data['pixel_mean'].astype(np.float32)[:, None, None]
    std = data['pixel_std'].astype(np.float32)[:, None, None]
    _, height, width = image.shape
    padded = (-np.array([height, width])) % SIZE_DIVISOR
    tensor = np.zeros((3, height + padded[0], width + padded[1]), np.float32)
    tensor[:, :height, :width] = (image - mean) / std
    return tensor


def compact_infer_file(src: Path, dst: Path) -> None:
    with np.load(src) as data:
        arrays = {k: data[k] for k in data.files if not is_full_only(k)}
        arrays['input_image'] = input_image_of(data)
        rebuilt = input_tensor_of(dict(arrays))
        if not np.array_equal(rebuilt, data['input_tensor']):
            raise RuntimeError(f'{src}: input_tensor is not rebuilt exactly')
    np.savez_compressed(dst, **arrays)


def main(full_dir: str) -> None:
    full, here = Path(full_dir), Path(__file__).resolve().parent
    shutil.copy(full / 'make_weights.py', here)
    (here / 'images').mkdir(exist_ok=True)
    for path in (full / 'images').iterdir():
        shutil.copy(path, here / 'images')
    for variant in VARIANTS:
        (here / variant).mkdir(exist_ok=True)
        for name in COPIED:
            shutil.copy(full / variant / name, here / variant)
        for image in INFER_IMAGES:
            compact_infer_file(full / variant / f'{image}_infer.npz',
                               here / variant / f'{image}_infer.npz')
        for path in (full / variant).glob('train_*.npz'):
            with np.load(path) as data:
                np.savez_compressed(here / variant / path.name,
                                    **{k: data[k]
                                       for k in data.files})


if __name__ == '__main__':
    main(sys.argv[1])
