"""Convert a centermask2 (detectron2) CenterMask or Panoptic-CenterMask
checkpoint to an MMEngine checkpoint of mmcentermask's ``CenterMask`` /
``PanopticCenterMask``.

Example::

    python tools/model_converters/centermask2_to_mmdet.py \\
        centermask2-V-39-eSE-FPN-ms-3x.pth centermask_v39_c2.pth \\
        --config configs/centermask/centermask_vovnet-v2-39_fpn_ms-3x_coco.py
    python tools/test.py \\
        configs/centermask/centermask_vovnet-v2-39_fpn_ms-3x_coco.py \\
        centermask_v39_c2.pth
    python tools/model_converters/centermask2_to_mmdet.py \\
        panoptic-centermask2-V-39-eSE-FPN-ms-3x.pth panoptic_v39_c2.pth \\
        --config configs/centermask-panoptic/panoptic-centermask_vovnet-v2-39_fpn_ms-3x_coco.py

A Panoptic-CenterMask checkpoint (with ``sem_seg_head.*`` keys) needs a
config of ``configs/centermask-panoptic/`` and an instance checkpoint one of
``configs/centermask/``; the other pairing stops with that message. The
semantic predictor's rows are reordered to ours ("things" last).

SRC: ``.pth`` (with or without a ``model`` entry) or ``.pkl`` of numpy
arrays. The target key set is the model of CONFIG: a source key no table
maps, or a target key not filled, stops the conversion with the list and
nothing is written. The part tables are in
:mod:`mmcentermask.converters.centermask2` and
:mod:`mmcentermask.converters.key_tables`. Only convert files you trust
(``.pth`` files are unpickled).
"""
import os.path as osp
import sys
from typing import List, Optional

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from mmcentermask.converters import convert_centermask2  # noqa: E402
from mmcentermask.converters.cli import main as convert_main  # noqa: E402


def main(argv: Optional[List[str]] = None) -> int:
    return convert_main(argv, convert_centermask2, 'centermask2')


if __name__ == '__main__':
    sys.exit(main())
