"""Masks of small objects: CenterMask-Lite as the authors built it, with the
stride-4 P2 mask level, and MMDetection's Mask R-CNN, side by side on the
bundled shapes set, over several seeds.

Method:

* the three models share the quick-start recipe
  (``configs/centermask/centermask-lite_vovnet-v2-19-slim-dw_fpn-64_1xb8-1600i_shapes.py``):
  the VoVNetV2-19-slim-dw backbone from scratch, 64-channel FPN and heads,
  the pipeline, batch 8, the fused AdamW schedule, at most 8 positive mask
  RoIs per image. ``centermask-lite-p2`` is
  ``..._fpn-64_mask-p2_1xb8-1600i_shapes.py``; ``mask-rcnn`` is
  MMDetection's Mask R-CNN (RPN, 2-fc box head, 4-conv mask head, P2-P6)
  on the same backbone, width and recipe
  (:func:`mmcentermask.utils.benchmark.mask_rcnn_recipe_cfg`; its config
  is written to ``WORK_DIR/mask-rcnn/seed-N/config.py``);
* every (seed, model) run trains with ``tools/train.py`` in its own
  process (``randomness.seed`` = the seed) and is evaluated on the val
  split at the end (COCO segm and bbox AP); the rounds go seed by seed,
  the models in turn, so that other load on the machine hits all alike;
* seconds per training iteration: the mean of the logged iteration times
  (MMEngine's ``time``, averaged over each logging interval of 50
  iterations) after the first interval; inference: the median wall time
  of ``mmdet.apis.inference_detector`` (loading, pipeline, model, pasted
  masks) over ``--infer-images`` val images, one at a time, after two
  warm-up images, with ``torch.set_num_threads(--threads)``;
* it prints one row per run and, per model, the mean and the spread
  (sample standard deviation) over the seeds, and writes them to
  ``WORK_DIR/summary.json``. A finished run (its ``result.json``) is
  reused when the script is run again.

Example (about 90 minutes on 2 cores)::

    python tools/dataset_converters/make_shapes_dataset.py --out data/shapes
    python tools/analysis_tools/benchmark_small_objects.py --seeds 0 1 2
"""
import argparse
import glob
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time
from typing import Dict, List

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SHAPES_CONFIG = osp.join(
    REPO_ROOT, 'configs', 'centermask',
    'centermask-lite_vovnet-v2-19-slim-dw_fpn-64_1xb8-1600i_shapes.py')
#: model name -> CenterMask config it is built from
MODELS = {
    'centermask-lite':
    SHAPES_CONFIG,
    'centermask-lite-p2':
    osp.join(
        REPO_ROOT, 'configs', 'centermask',
        'centermask-lite_vovnet-v2-19-slim-dw_fpn-64_mask-p2_1xb8-1600i_'
        'shapes.py'),
    'mask-rcnn':
    SHAPES_CONFIG,
}
#: printed figures: key in result.json -> column title
FIGURES = {
    'segm_mAP': 'segm mAP',
    'segm_mAP_s': 'segm AP_small',
    'bbox_mAP': 'bbox mAP',
    'train_s_per_iter': 's / train iter',
    'infer_s_per_image': 's / image (inference)',
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument(
        '--models', nargs='+', choices=list(MODELS), default=list(MODELS))
    parser.add_argument(
        '--iters',
        type=int,
        default=None,
        help='training iterations (default: the config\'s, 1600)')
    parser.add_argument('--data-root', default='data/shapes/')
    parser.add_argument('--work-dir', default='work_dirs/small_objects')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--infer-images', type=int, default=20)
    return parser.parse_args()


def run_config(model: str, seed: int, args: argparse.Namespace):
    """The training config of one run: the model's, seeded, on
    ``--data-root``, with ``--iters`` iterations if given."""
    from mmengine.config import Config

    from mmcentermask.utils.benchmark import mask_rcnn_recipe_cfg
    cfg = Config.fromfile(MODELS[model])
    if model == 'mask-rcnn':
        cfg = mask_rcnn_recipe_cfg(cfg)
    data_root = osp.join(args.data_root, '')
    cfg.randomness = dict(seed=seed)
    for loader in (cfg.train_dataloader, cfg.val_dataloader,
                   cfg.test_dataloader):
        loader.dataset.data_root = data_root
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        evaluator.ann_file = data_root + 'annotations/val.json'
    if args.iters is not None:
        cfg.train_cfg.max_iters = args.iters
        cfg.train_cfg.val_interval = args.iters
    return cfg


def train(model: str, seed: int, args: argparse.Namespace) -> dict:
    """Train and evaluate one run (or read its earlier result)."""
    work_dir = osp.join(args.work_dir, model, f'seed-{seed}')
    result_file = osp.join(work_dir, 'result.json')
    if osp.exists(result_file):
        with open(result_file) as f:
            return json.load(f)
    os.makedirs(work_dir, exist_ok=True)
    config = osp.join(work_dir, 'config.py')
    run_config(model, seed, args).dump(config)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    subprocess.run([
        sys.executable,
        osp.join(REPO_ROOT, 'tools', 'train.py'), config, '--work-dir',
        work_dir
    ],
                   check=True,
                   env=env)
    result = dict(model=model, seed=seed, **logged_figures(work_dir))
    result['infer_s_per_image'] = inference_time(config, work_dir, args)
    with open(result_file, 'w') as f:
        json.dump(result, f, indent=1)
    return result


def logged_figures(work_dir: str) -> Dict[str, float]:
    """Final COCO figures and mean s/iter from the run's scalars.json."""
    scalars = sorted(
        glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))[-1]
    with open(scalars) as f:
        records = [json.loads(line) for line in f]
    if not any('loss' in r for r in records):
        raise RuntimeError(f'{scalars} logs no training iteration')
    times = [r['time'] for r in records if 'loss' in r and 'time' in r]
    metrics = [r for r in records if 'coco/segm_mAP' in r]
    # MMDetection's CocoMetric logs no figures when a model detects
    # nothing in the whole val split: every AP is then 0
    final = metrics[-1] if metrics else {}
    return dict(
        segm_mAP=final.get('coco/segm_mAP', 0.),
        segm_mAP_s=final.get('coco/segm_mAP_s', 0.),
        bbox_mAP=final.get('coco/bbox_mAP', 0.),
        train_s_per_iter=statistics.mean(times[1:] or times),
        detected_nothing=not metrics)


def inference_time(config: str, work_dir: str,
                   args: argparse.Namespace) -> float:
    """Median seconds of ``inference_detector`` per val image."""
    import torch
    from mmdet.apis import inference_detector, init_detector
    torch.set_num_threads(args.threads)
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    model = init_detector(config, checkpoint, device='cpu')
    images = sorted(glob.glob(osp.join(args.data_root, 'val', '*.png')))
    images = images[:args.infer_images + 2]
    times = []
    for image in images:
        start = time.perf_counter()
        inference_detector(model, image)
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:] or times)


def summarize(results: List[dict]) -> Dict[str, Dict[str, List[float]]]:
    """Per model and figure: [mean, sample standard deviation]."""
    summary = {}
    for model in dict.fromkeys(r['model'] for r in results):
        runs = [r for r in results if r['model'] == model]
        summary[model] = {
            key: [
                statistics.mean(r[key] for r in runs),
                statistics.stdev(r[key]
                                 for r in runs) if len(runs) > 1 else 0.
            ]
            for key in FIGURES
        }
        summary[model]['seeds'] = [r['seed'] for r in runs]
    return summary


def print_table(results: List[dict], summary: dict) -> None:
    """The per-run rows, then mean +- spread per model (Markdown)."""
    header = '| model | seed | ' + ' | '.join(FIGURES.values()) + ' |'
    print(header)
    print('|' + ' --- |' * (len(FIGURES) + 2))
    for r in results:
        print(f"| {r['model']} | {r['seed']} | " +
              ' | '.join(f'{r[key]:.3f}' for key in FIGURES) + ' |')
    print()
    print('| model | seeds | ' + ' | '.join(FIGURES.values()) + ' |')
    print('|' + ' --- |' * (len(FIGURES) + 2))
    for model, figures in summary.items():
        seeds = ', '.join(map(str, figures['seeds']))
        print(f'| {model} | {seeds} | ' + ' | '.join(
            f'{figures[key][0]:.3f} +- {figures[key][1]:.3f}'
            for key in FIGURES) + ' |')


def main() -> None:
    args = parse_args()
    sys.path.insert(0, REPO_ROOT)
    import mmcentermask  # noqa: F401  (registration)
    if not osp.exists(osp.join(args.data_root, 'annotations', 'val.json')):
        raise SystemExit(
            f'no shapes dataset at {args.data_root}: make it with python '
            'tools/dataset_converters/make_shapes_dataset.py --out '
            f'{args.data_root}')
    results = [
        train(model, seed, args) for seed in args.seeds
        for model in args.models
    ]
    summary = summarize(results)
    with open(osp.join(args.work_dir, 'summary.json'), 'w') as f:
        json.dump(dict(runs=results, summary=summary), f, indent=1)
    print_table(results, summary)


if __name__ == '__main__':
    main()
