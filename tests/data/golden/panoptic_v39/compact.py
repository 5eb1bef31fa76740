"""Write the compact Panoptic-CenterMask V-39 golden data of this folder from
the full centermask2 golden set (``../shared/golden`` next to the
repository).

Usage (from the repository root)::

    python tests/data/golden/panoptic_v39/compact.py ../shared/golden

Kept per image (``<image>_panoptic.npz``): the sizes, the per-channel
statistics of FPN P2-P7, the stride-4 semantic logits at every 4th row and
column (``sem_seg_stride4_logits__every4``), the semantic argmax at the
original size, the FCOS detections, the final instances with their packed
masks and the panoptic id map. Left out (full set only): the network input
(it is the V-39 instance set's ``input_image``, checked equal here), the
4-channel FPN maps (``fpn_p*__subset``), the full stride-4 logits and the
final logits at the original size. ``meta.json`` (segments_info),
``manifest.json`` and ``config_dump.yaml`` are copied unchanged.
"""
import fnmatch
import shutil
import sys
from pathlib import Path

import numpy as np

IMAGES = ('coffee', 'moto_crop')
COPIED = ('manifest.json', 'meta.json', 'config_dump.yaml')
#: arrays only the full set has
FULL_ONLY = ('input_tensor', 'fpn_p*__subset', 'fpn_p*__channels',
             'sem_seg_stride4_logits', 'sem_seg_logits_every4')
#: spatial step of the kept stride-4 logits
LOGITS_STEP = 4


def is_full_only(key: str) -> bool:
    """Whether ``key`` is left out of the compact set."""
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in FULL_ONLY)


def compact_file(src: Path, dst: Path, instance_input: Path) -> None:
    """Write the compact copy of one ``<image>_panoptic.npz``."""
    with np.load(src) as data, np.load(instance_input) as instance:
        image = np.round(data['input_tensor'])
        if not np.array_equal(data['input_tensor'], image) or \
                not np.array_equal(image, instance['input_image']):
            raise RuntimeError(
                f'{src}: input_tensor is not the input_image of '
                f'{instance_input}')
        arrays = {k: data[k] for k in data.files if not is_full_only(k)}
        arrays['sem_seg_stride4_logits__every4'] = data[
            'sem_seg_stride4_logits'][:, ::LOGITS_STEP, ::LOGITS_STEP]
    np.savez_compressed(dst, **arrays)


def main(full_dir: str) -> None:
    full = Path(full_dir)
    here = Path(__file__).resolve().parent
    for name in COPIED:
        shutil.copy(full / 'panoptic_v39' / name, here)
    for image in IMAGES:
        compact_file(full / 'panoptic_v39' / f'{image}_panoptic.npz',
                     here / f'{image}_panoptic.npz',
                     here.parent / 'v39' / f'{image}_infer.npz')


if __name__ == '__main__':
    main(sys.argv[1])
