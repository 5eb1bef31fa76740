"""Draw predictions on an image, a folder of images or the frames of a video.

    python tools/demo.py INPUT CONFIG CHECKPOINT [--out-dir outputs/demo]
        [--score-thr 0.3] [--device cpu] [--frame-step 10]
        [--backend pytorch|onnxruntime]

Uses MMDetection's ``DetInferencer`` (masks, boxes, class names and scores
drawn by ``DetLocalVisualizer``); pictures go to ``OUT_DIR/vis/``. With
``--backend onnxruntime`` CHECKPOINT is a model exported by
``tools/deployment/pytorch2onnx.py``, run by
:class:`mmcentermask.deploy.ONNXRuntimeCenterMask` and drawn by the same
visualizer.
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
IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif',
              '.tiff', '.webp')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('input', help='image file, folder or video file')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint',
                        help='checkpoint file (.onnx file for onnxruntime)')
    parser.add_argument('--out-dir', default='outputs/demo')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='draw detections with a score at least this')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--frame-step', type=int, default=10,
                        help='for videos: draw every N-th frame')
    parser.add_argument('--backend', choices=('pytorch', 'onnxruntime'),
                        default='pytorch')
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


def image_list(inputs: Union[str, List[np.ndarray]]) -> List[tuple]:
    """(name, path or BGR array) of every image to draw."""
    if not isinstance(inputs, str):
        return [(f'frame_{i:05d}.jpg', frame)
                for i, frame in enumerate(inputs)]
    if not osp.isdir(inputs):
        return [(osp.basename(inputs), inputs)]
    return [(name, osp.join(inputs, name))
            for name in sorted(os.listdir(inputs))
            if name.lower().endswith(IMAGE_EXTS)]


def onnxruntime_demo(args: argparse.Namespace) -> None:
    """Draw the predictions of an exported model run by ONNX Runtime."""
    import mmcv
    from mmdet.registry import DATASETS, VISUALIZERS

    from mmcentermask.deploy import ONNXRuntimeCenterMask
    runner = ONNXRuntimeCenterMask(args.config, args.checkpoint)
    dataset_cfg = runner.cfg.test_dataloader.dataset
    metainfo = dict(DATASETS.get(dataset_cfg.type).METAINFO)
    metainfo.update(dataset_cfg.get('metainfo') or {})
    visualizer = VISUALIZERS.build(
        dict(runner.cfg.visualizer, name='onnxruntime_demo'))
    visualizer.dataset_meta = metainfo
    for name, image in image_list(load_inputs(args.input, args.frame_step)):
        sample = runner.infer([image])[0]
        rgb = (mmcv.imread(image, channel_order='rgb')
               if isinstance(image, str) else image[..., ::-1])
        visualizer.add_datasample(
            name, rgb, sample, draw_gt=False,
            pred_score_thr=args.score_thr,
            out_file=osp.join(args.out_dir, 'vis', name))


def main() -> None:
    args = parse_args()
    if args.backend == 'onnxruntime':
        onnxruntime_demo(args)
        print(f'pictures written to {osp.join(args.out_dir, "vis")}')
        return
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
