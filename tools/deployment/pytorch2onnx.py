"""Export a CenterMask checkpoint to one ONNX file (image to detections).

    python tools/deployment/pytorch2onnx.py CONFIG CHECKPOINT --out model.onnx
        [--shape H W [--dynamic]] [--opset 17] [--simplify]

The graph takes the normalised, padded image (1, 3, H, W) and its unpadded
size (h, w), and returns boxes, scores, labels, 28 x 28 mask probabilities
and mask scores (docs/deployment.md). By default the input height and width
are dynamic, so ONNX Runtime runs every image at the size PyTorch runs it and
gives PyTorch's results (traced at the config's test scale, padded).
``--shape H W`` fixes the padded input size instead (smaller images are
zero-padded to it, which changes the results of models with GroupNorm heads:
the tool and the runner warn); with ``--dynamic`` too, ``--shape`` is only
the tracing size. ``--simplify`` runs onnxsim on the file.
Run the result with ``tools/deployment/test_onnx.py`` or
``tools/demo.py --backend onnxruntime``.
"""
import argparse
import math
import os.path as osp
import sys
from typing import Tuple

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO_ROOT)
import mmcentermask  # noqa: E402,F401
from mmcentermask.deploy.export import DEFAULT_OPSET  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', required=True, help='output .onnx file')
    parser.add_argument(
        '--shape', type=int, nargs=2, metavar=('H', 'W'),
        help='fix the padded input height and width (default: dynamic, '
        'traced at the config test scale padded to the pad_size_divisor)')
    parser.add_argument(
        '--dynamic', action='store_true',
        help='dynamic input height and width even with --shape (which is '
        'then only the tracing size); the default without --shape')
    parser.add_argument('--opset', type=int, default=DEFAULT_OPSET,
                        help='ONNX opset (>= 16)')
    parser.add_argument('--simplify', action='store_true',
                        help='simplify the graph with onnxsim')
    return parser.parse_args()


def default_shape(cfg) -> Tuple[int, int]:
    """The padded size of an image at the config's test scale: the longer
    and shorter ``Resize.scale`` sides, landscape, rounded up to the
    preprocessor's ``pad_size_divisor``."""
    resize = [
        step for step in cfg.test_dataloader.dataset.pipeline
        if step['type'].endswith('Resize')
    ]
    if not resize or 'scale' not in resize[0]:
        raise ValueError('the config test pipeline has no Resize with a '
                         'scale; pass --shape H W')
    long_side, short_side = max(resize[0]['scale']), min(resize[0]['scale'])
    divisor = cfg.model.data_preprocessor.get('pad_size_divisor', 1)
    return (math.ceil(short_side / divisor) * divisor,
            math.ceil(long_side / divisor) * divisor)


def simplify(path: str) -> None:
    """Simplify the ONNX file in place with onnxsim."""
    try:
        import onnx
        import onnxsim
    except ImportError as error:
        raise ImportError('--simplify needs onnxsim: pip install onnxsim '
                          '(installed with the tests extra)') from error
    model, checked = onnxsim.simplify(onnx.load(path))
    if not checked:
        raise RuntimeError(f'onnxsim could not validate the simplified '
                           f'{path}; export without --simplify')
    onnx.save(model, path)


def main() -> None:
    args = parse_args()
    from mmdet.apis import init_detector
    from mmengine.config import Config
    from mmengine.runner import load_checkpoint

    from mmcentermask.deploy import check_exportable, export_onnx
    cfg = Config.fromfile(args.config)
    shape = tuple(args.shape) if args.shape else default_shape(cfg)
    dynamic = args.dynamic or not args.shape
    model = init_detector(cfg, None, device='cpu')
    try:
        check_exportable(model)
        load_checkpoint(model, args.checkpoint, map_location='cpu')
        export_onnx(model, args.out, shape, dynamic=dynamic,
                    opset=args.opset)
    except (NotImplementedError, TypeError, ValueError) as error:
        sys.exit(f'pytorch2onnx: cannot export {args.config}: {error}')
    if args.simplify:
        simplify(args.out)
    kind = (f'dynamic height/width, traced at {shape[0]}x{shape[1]}'
            if dynamic else f'fixed {shape[0]}x{shape[1]} input')
    print(f'exported {args.out} ({kind}, opset {args.opset})')


if __name__ == '__main__':
    main()
