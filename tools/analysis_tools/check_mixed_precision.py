"""Inference under autocast (float16 / bfloat16) against float32.

Runs ``mmdet.apis.inference_detector`` (test pipeline, ``model.test_step``)
on the given images once in float32 and once under
``torch.autocast(device, dtype)`` for each ``--dtypes`` entry, with the same
weights. Per dtype it prints the median latency of ``--repeat`` runs after
one warm-up (CUDA: synchronised), the detections per image, whether every
box, score and mask score is finite, and the agreement with float32: for
the ``--top`` highest-scoring float32 detections of each image, the IoU of
the best-overlapping low-precision box of the same class (median and
minimum over the images) and the largest score difference of the matched
pairs. Exits with 1 when a run raises or gives a non-finite value or no
detection where float32 has some; the agreement figures are reported, not
judged.

Example::

    python tools/analysis_tools/check_mixed_precision.py CONFIG \\
        --checkpoint CKPT --images data/shapes/val --device cuda \\
        --dtypes float16 bfloat16
"""
import argparse
import contextlib
import os
import os.path as osp
import statistics
import sys
import time
from typing import Dict, List, Optional

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import torch  # noqa: E402
from mmdet.apis import inference_detector, init_detector  # noqa: E402
from mmdet.structures import DetDataSample  # noqa: E402
from mmdet.structures.bbox import bbox_overlaps  # noqa: E402
from mmengine.config import DictAction  # noqa: E402

import mmcentermask  # noqa: E402,F401  (registration)

DTYPES = dict(float16=torch.float16, bfloat16=torch.bfloat16)


def image_paths(inputs: List[str], limit: int) -> List[str]:
    """The first ``limit`` files of the given files and folders (sorted)."""
    paths = []
    for item in inputs:
        if osp.isdir(item):
            paths += [
                osp.join(item, name) for name in sorted(os.listdir(item))
            ]
        else:
            paths.append(item)
    return paths[:limit]


def predict(model: torch.nn.Module, images: List[str],
            dtype: Optional[torch.dtype], repeat: int,
            device: str) -> Dict[str, object]:
    """Predictions and median latency (ms) of ``repeat`` runs after one
    warm-up, under autocast to ``dtype`` (None: float32)."""
    device_type = torch.device(device).type
    times = []
    for i in range(repeat + 1):
        if device_type == 'cuda':
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device_type, dtype=dtype) if dtype \
                else contextlib.nullcontext():
            results = inference_detector(model, images)
        if device_type == 'cuda':
            torch.cuda.synchronize()
        if i > 0:
            times.append(1000 * (time.perf_counter() - start))
    return dict(results=results, latency_ms=statistics.median(times))


def all_finite(result: DetDataSample) -> bool:
    """Boxes, scores and mask scores of one image are all finite."""
    pred = result.pred_instances
    return all(
        bool(torch.isfinite(pred[key].float()).all())
        for key in ('bboxes', 'scores', 'mask_scores') if key in pred)


def agreement(reference: DetDataSample, result: DetDataSample,
              top: int) -> Optional[Dict[str, float]]:
    """IoU of the best same-class match of each of the ``top`` best
    reference detections (minimum over them) and the largest score
    difference of the matched pairs; None when the reference is empty."""
    ref, pred = reference.pred_instances, result.pred_instances
    if len(ref) == 0:
        return None
    order = ref.scores.argsort(descending=True)[:top]
    ious = bbox_overlaps(ref.bboxes[order].float(), pred.bboxes.float())
    same_class = ref.labels[order, None] == pred.labels[None, :]
    ious = torch.where(same_class, ious, ious.new_zeros(()))
    if ious.numel() == 0:
        return dict(min_iou=0.0, max_score_diff=float('inf'))
    best_iou, best = ious.max(dim=1)
    score_diff = (ref.scores[order] - pred.scores[best].float()).abs()
    return dict(
        min_iou=float(best_iou.min()), max_score_diff=float(score_diff.max()))


def check(args: argparse.Namespace) -> bool:
    """Run every dtype, print the table; True when every check passed."""
    model = init_detector(
        args.config,
        args.checkpoint,
        device=args.device,
        cfg_options=args.cfg_options)
    images = image_paths(args.images, args.num_images)
    if not images:
        sys.exit(f'no image found in {args.images}')
    hardware = torch.cuda.get_device_name() if 'cuda' in args.device \
        else 'cpu'
    print(f'{len(images)} images, device {args.device} ({hardware}), '
          f'torch {torch.__version__}, checkpoint {args.checkpoint}')
    reference = predict(model, images, None, args.repeat, args.device)
    print(f'float32: {reference["latency_ms"]:.1f} ms for the '
          f'{len(images)} images, detections per image '
          f'{[len(r.pred_instances) for r in reference["results"]]}')
    passed = all(all_finite(r) for r in reference['results'])
    for name in args.dtypes:
        try:
            run = predict(model, images, DTYPES[name], args.repeat,
                          args.device)
        except Exception as error:  # reported, the other dtypes still run
            print(f'{name}: FAILED with {type(error).__name__}: {error}')
            passed = False
            continue
        counts = [len(r.pred_instances) for r in run['results']]
        finite = all(all_finite(r) for r in run['results'])
        empty = any(
            len(r.pred_instances) == 0 and len(ref.pred_instances) > 0
            for r, ref in zip(run['results'], reference['results']))
        matches = [
            agreement(ref, r, args.top)
            for ref, r in zip(reference['results'], run['results'])
        ]
        matches = [m for m in matches if m is not None]
        ious = [m['min_iou'] for m in matches]
        diffs = [m['max_score_diff'] for m in matches]
        ok = finite and not empty
        passed &= ok
        nan = float('nan')
        print(f'{name}: {"ok" if ok else "FAILED"}; {run["latency_ms"]:.1f} '
              f'ms; detections per image {counts}; all finite: {finite}; '
              f'top-{args.top} float32 detections: best same-class IoU '
              f'median {statistics.median(ious) if ious else nan:.4f} '
              f'min {min(ious) if ious else nan:.4f}, largest score '
              f'difference {max(diffs) if diffs else nan:.2e}')
    return passed


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('config', help='model config')
    parser.add_argument(
        '--checkpoint', help='weights (default: the random init)')
    parser.add_argument(
        '--images', nargs='+', required=True, help='image files or folders')
    parser.add_argument(
        '--num-images', type=int, default=8, help='images used (first N)')
    parser.add_argument('--device', default='cuda:0', help='cuda:0 or cpu')
    parser.add_argument(
        '--dtypes',
        nargs='+',
        choices=list(DTYPES),
        default=list(DTYPES),
        help='autocast types checked against float32')
    parser.add_argument(
        '--repeat', type=int, default=3, help='timed runs (median)')
    parser.add_argument(
        '--top',
        type=int,
        default=10,
        help='best float32 detections per image matched')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='config overrides, as in tools/test.py')
    return parser.parse_args()


if __name__ == '__main__':
    sys.exit(0 if check(parse_args()) else 1)
