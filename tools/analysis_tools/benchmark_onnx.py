"""CPU latency of ONNX Runtime against PyTorch, same model, weights and image,
in one run.

    python tools/analysis_tools/benchmark_onnx.py CONFIG CHECKPOINT IMAGE
        [--shape 600 1000] [--threads 2] [--repeat 10] [--warmup 2]
        [--onnx model.onnx]

The image is resized to exactly ``--shape`` (H, W) and goes through the
config's data preprocessor once; each timed call then runs the network and
the post-processing up to pasted masks at the original size:
``CenterMask.predict`` in PyTorch, ``ONNXRuntimeCenterMask.run`` +
``paste_masks`` in ONNX Runtime (the model is exported with a fixed input
size first unless ``--onnx`` is given). Prints the median wall time of each
and their ratio, and checks that both found the same number of detections.
"""
import argparse
import os.path as osp
import statistics
import sys
import tempfile
import time
from typing import Callable, List

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO_ROOT)
import mmcentermask  # noqa: E402,F401


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('image', help='image file (resized to --shape)')
    parser.add_argument('--shape', type=int, nargs=2, default=(600, 1000),
                        metavar=('H', 'W'))
    parser.add_argument('--threads', type=int, default=2,
                        help='threads of both runtimes')
    parser.add_argument('--repeat', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--onnx', help='use this exported model')
    return parser.parse_args()


def median_ms(call: Callable[[], int], repeat: int, warmup: int) -> tuple:
    """(median wall time in ms, detections of the last call)."""
    for _ in range(warmup):
        call()
    times: List[float] = []
    for _ in range(repeat):
        start = time.perf_counter()
        detections = call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), detections


def main() -> None:
    args = parse_args()
    import mmcv
    import torch
    from mmdet.apis import init_detector
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate

    from mmcentermask.deploy import ONNXRuntimeCenterMask, export_onnx
    torch.set_num_threads(args.threads)
    cfg = Config.fromfile(args.config)
    model = init_detector(cfg, args.checkpoint, device='cpu')
    height, width = args.shape
    image = mmcv.imresize(mmcv.imread(args.image), (width, height))
    onnx_file = args.onnx
    with tempfile.TemporaryDirectory() as tmp_dir:
        if onnx_file is None:
            divisor = cfg.model.data_preprocessor.get('pad_size_divisor', 1)
            padded = tuple(-(-side // divisor) * divisor
                           for side in (height, width))
            onnx_file = osp.join(tmp_dir, 'model.onnx')
            export_onnx(model, onnx_file, padded, dynamic=False)
        runner = ONNXRuntimeCenterMask(cfg, onnx_file, args.threads)
        data = runner.data_preprocessor(
            pseudo_collate([runner._load(image)]), False)
        inputs, sample = data['inputs'], data['data_samples'][0]

        def pytorch() -> int:
            with torch.no_grad():
                return len(
                    model.predict(inputs, [sample])[0].pred_instances)

        def onnxruntime() -> int:
            outputs = runner.run(inputs, sample.metainfo['img_shape'][:2])
            return len(runner.paste_masks(outputs, sample.metainfo))

        torch_ms, torch_dets = median_ms(pytorch, args.repeat, args.warmup)
        ort_ms, ort_dets = median_ms(onnxruntime, args.repeat, args.warmup)
    print(f'input {height}x{width} (padded {tuple(inputs.shape[-2:])}), '
          f'{args.threads} threads, median of {args.repeat}')
    print(f'PyTorch {torch.__version__}: {torch_ms:.0f} ms '
          f'({torch_dets} detections)')
    import onnxruntime as ort
    print(f'ONNX Runtime {ort.__version__}: {ort_ms:.0f} ms '
          f'({ort_dets} detections)')
    print(f'ONNX Runtime / PyTorch latency: {ort_ms / torch_ms:.2f}x')
    if torch_dets != ort_dets:
        sys.exit('the two runtimes found different numbers of detections')


if __name__ == '__main__':
    main()
