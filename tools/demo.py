"""Draw predictions on an image, a folder of images or the frames of a video.

    python tools/demo.py INPUT CONFIG CHECKPOINT [--out-dir outputs/demo]
        [--score-thr 0.3] [--device cpu] [--frame-step 10]

Uses MMDetection's ``DetInferencer`` (masks, boxes, class names and scores
drawn by ``DetLocalVisualizer``); pictures go to ``OUT_DIR/vis/``.
"""
import argparse
import os
import os.path as osp
import sys
from typing import List, Union

import numpy as np

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import mmcentermask  # noqa: E402,F401

VIDEO_EXTS = ('.mp4', '.avi', '.mov', '.mkv', '.webm')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('input', help='image file, folder or video file')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out-dir', default='outputs/demo')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='draw detections with a score at least this')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--frame-step', type=int, default=10,
                        help='for videos: draw every N-th frame')
    return parser.parse_args()


def load_inputs(path: str, frame_step: int) -> Union[str, List[np.ndarray]]:
    """Image path or folder as is; the sampled frames of a video as arrays."""
    if not osp.exists(path):
        raise FileNotFoundError(f'demo input {path} does not exist')
    if not path.lower().endswith(VIDEO_EXTS):
        return path
    import mmcv
    video = mmcv.VideoReader(path)
    frames = [frame for i, frame in enumerate(video) if i % frame_step == 0]
    if not frames:
        raise ValueError(f'no frame could be read from video {path}')
    return frames


def main() -> None:
    args = parse_args()
    from mmdet.apis import DetInferencer
    inferencer = DetInferencer(model=args.config, weights=args.checkpoint,
                               device=args.device, show_progress=True)
    inputs = load_inputs(args.input, args.frame_step)
    os.makedirs(args.out_dir, exist_ok=True)
    inferencer(inputs, out_dir=args.out_dir, pred_score_thr=args.score_thr,
               no_save_pred=False)
    print(f'pictures written to {osp.join(args.out_dir, "vis")}')


if __name__ == '__main__':
    main()
