"""Convert an original CenterMask checkpoint (maskrcnn-benchmark,
``youngwanLEE/CenterMask``) to an MMEngine checkpoint of mmcentermask's
``CenterMask``.

Example::

    python tools/model_converters/maskrcnn_benchmark_to_mmdet.py \\
        centermask-V-39-ms-3x.pth centermask_v39_mb.pth \\
        --config configs/centermask/centermask_vovnet-v2-39_fpn_mb-ms-3x_coco.py

The converter strips ``module.``, folds maskrcnn-benchmark's eps-free
FrozenBN into the BN statistics (``running_var - 1e-5``) and drops row 0
(background) of the 81-way mask and MaskIoU predictors. Use a config with the
maskrcnn-benchmark switches (the example above; its header lists what is not
reproduced). A source key no table maps, or a target key not filled, stops
the conversion with the list and nothing is written. Only convert files you
trust (``.pth`` files are unpickled).
"""
import os.path as osp
import sys
from typing import List, Optional

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from mmcentermask.converters import convert_maskrcnn_benchmark  # noqa: E402
from mmcentermask.converters.cli import main as convert_main  # noqa: E402


def main(argv: Optional[List[str]] = None) -> int:
    return convert_main(argv, convert_maskrcnn_benchmark, 'maskrcnn-benchmark')


if __name__ == '__main__':
    sys.exit(main())
