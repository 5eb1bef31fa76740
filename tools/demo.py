"""Draw predictions on an image, a folder of images or the frames of a video.

    python tools/demo.py INPUT CONFIG CHECKPOINT [--out-dir outputs/demo]
        [--score-thr 0.3] [--device cpu] [--frame-step 10]
        [--backend pytorch|onnxruntime]

Uses MMDetection's ``DetInferencer`` (masks, boxes, class names and scores
drawn by ``DetLocalVisualizer``, built by
:func:`mmcentermask.apis.init_inferencer`); pictures go to ``OUT_DIR/vis/``,
the predictions (boxes, labels, scores, RLE masks) to ``OUT_DIR/preds/``.
A panoptic config (``configs/centermask-panoptic/``) also writes each panoptic
map as a COCO panoptic PNG to ``OUT_DIR/panoptic/`` (no panopticapi needed:
:class:`mmcentermask.apis.PanopticDetInferencer`) and draws the stuff and
thing segments with the instances.

A folder is processed file by file: every file that decodes as an image is
drawn, whatever its extension's case; the others are listed on stderr with the
reason (empty, truncated, not an image) and skipped. The summary counts the
pictures really written; the exit code is 1 when none (or not all readable
inputs) were written, or when a single input file is not a readable image.

With ``--backend onnxruntime`` CHECKPOINT is a model exported by
``tools/deployment/pytorch2onnx.py``, run by
:class:`mmcentermask.deploy.ONNXRuntimeCenterMask` inside the same inferencer
(:class:`mmcentermask.apis.ort_det_inferencer.ONNXRuntimeDetInferencer`).
"""
import argparse
import os
import os.path as osp
import sys
from typing import List, Tuple, Union

import numpy as np

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import mmcentermask  # noqa: E402,F401
from mmcentermask.apis import BACKENDS, init_inferencer  # noqa: E402
from mmcentermask.utils.image_check import unreadable_reason  # noqa: E402

VIDEO_EXTS = ('.mp4', '.avi', '.mov', '.mkv', '.webm')
# Extensions OpenCV can write the drawn picture under (it keeps the name).
WRITABLE_EXTS = ('.jpg', '.jpeg', '.jpe', '.png', '.bmp', '.dib', '.tif',
                 '.tiff', '.webp', '.jp2', '.pbm', '.pgm', '.ppm', '.pxm',
                 '.pnm', '.sr', '.ras', '.exr', '.hdr', '.pic')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('input', help='image file, folder or video file')
    parser.add_argument('config', help='model config file')
    parser.add_argument(
        'checkpoint', help='checkpoint file (.onnx file for onnxruntime)')
    parser.add_argument('--out-dir', default='outputs/demo')
    parser.add_argument(
        '--score-thr',
        type=float,
        default=0.3,
        help='draw detections with a score above this')
    parser.add_argument('--device', default='cpu')
    parser.add_argument(
        '--frame-step',
        type=int,
        default=10,
        help='for videos: draw every N-th frame')
    parser.add_argument(
        '--backend',
        choices=BACKENDS,
        default='pytorch',
        help='run the PyTorch checkpoint or an exported .onnx model')
    return parser.parse_args()


def collect_images(path: str) -> Tuple[List[str], List[Tuple[str, str]]]:
    """Readable images of a file or folder, and the skipped files with reasons.

    A folder contributes every regular file whose content decodes as an image,
    whatever the case of its extension (``.JPG``, ``.Png``); nothing is chosen
    by extension.
    """
    if osp.isdir(path):
        files = sorted(
            osp.join(path, name) for name in os.listdir(path)
            if osp.isfile(osp.join(path, name)))
    else:
        files = [path]
    images, skipped = [], []
    for file in files:
        if file.lower().endswith(VIDEO_EXTS) and osp.isdir(path):
            skipped.append((file, 'a video: give it as INPUT on its own'))
            continue
        reason = unreadable_reason(file)
        ext = osp.splitext(file)[1].lower()
        if reason is None and ext not in WRITABLE_EXTS:
            reason = (
                'an image, but the picture cannot be written under its '
                f'extension {ext or "(none)"!r}; rename it to .png or .jpg')
        if reason is None:
            images.append(file)
        else:
            skipped.append((file, reason))
    return images, skipped


def load_video(path: str, frame_step: int) -> List[np.ndarray]:
    """The sampled frames of a video as BGR arrays."""
    import mmcv
    video = mmcv.VideoReader(path)
    frames = [frame for i, frame in enumerate(video) if i % frame_step == 0]
    if not frames:
        raise ValueError(f'no frame could be read from video {path}')
    return frames


def main() -> int:
    args = parse_args()
    if not osp.exists(args.input):
        raise FileNotFoundError(f'demo input {args.input} does not exist')
    skipped: List[Tuple[str, str]] = []
    if osp.isfile(args.input) and args.input.lower().endswith(VIDEO_EXTS):
        inputs: Union[List[str],
                      List[np.ndarray]] = load_video(args.input,
                                                     args.frame_step)
        expected = None
    else:
        inputs, skipped = collect_images(args.input)
        expected = [osp.basename(p) for p in inputs]
        for file, reason in skipped:
            print(f'skipped {file}: {reason}', file=sys.stderr)
        if not inputs:
            what = 'folder has no readable image' if osp.isdir(
                args.input) else 'file is not a readable image'
            print(
                f'error: {args.input}: the {what}; nothing was drawn.',
                file=sys.stderr)
            return 1
    os.makedirs(args.out_dir, exist_ok=True)
    vis_dir = osp.join(args.out_dir, 'vis')
    before = set(os.listdir(vis_dir)) if osp.isdir(vis_dir) else set()
    inferencer = init_inferencer(
        args.config,
        args.checkpoint,
        device=args.device,
        backend=args.backend,
        show_progress=True)
    inferencer(
        inputs,
        out_dir=args.out_dir,
        pred_score_thr=args.score_thr,
        no_save_pred=False)
    if expected is None:  # video frames: the inferencer names them
        written = sorted(set(os.listdir(vis_dir)) -
                         before) if osp.isdir(vis_dir) else []
    else:
        written = [n for n in expected if osp.isfile(osp.join(vis_dir, n))]
    print(f'{len(written)} pictures written to {vis_dir}' + (
        f'; {len(skipped)} files skipped (listed above)' if skipped else ''))
    missing = [] if expected is None else sorted(set(expected) - set(written))
    if missing or not written:
        print(
            f'error: no picture was written for {missing or args.input}',
            file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
