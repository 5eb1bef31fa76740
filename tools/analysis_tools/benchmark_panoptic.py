"""Panoptic quick run: Panoptic-CenterMask-Lite and MMDetection's Panoptic
FPN, side by side on the bundled panoptic shapes set.

Method:

* both models share the Panoptic-CenterMask-Lite shapes recipe
  (``configs/centermask-panoptic/panoptic-centermask-lite_vovnet-v2-19-slim-dw_fpn-64_1xb8-1600i_shapes.py``):
  the VoVNetV2-19-slim-dw backbone from scratch, 64-channel FPN and heads,
  the data and pipeline, batch 8, the fused AdamW schedule of 1600
  iterations, at most 8 positive mask RoIs per image. ``panoptic-fpn`` is
  MMDetection's Panoptic FPN (Mask R-CNN: RPN, 2-fc box head, 4-conv mask
  head, P2-P6; ``PanopticFPNHead`` on P2-P5; ``HeuristicFusionHead``) on
  the same backbone, width and recipe
  (:func:`mmcentermask.utils.benchmark.panoptic_fpn_recipe_cfg`; its
  config is written to ``WORK_DIR/panoptic-fpn/seed-N/config.py``);
* every (seed, model) run trains with ``tools/train.py`` in its own
  process and is evaluated on the val split at the end
  (``CocoPanopticQualityMetric``: PQ, SQ, RQ in percent, all classes,
  things and stuff);
* minutes of training: the wall time of the whole ``tools/train.py``
  process (start-up, 1600 iterations, the final evaluation); seconds per
  training iteration and inference time per image as in
  ``benchmark_small_objects.py``;
* one row per run, then per model the mean and spread over the seeds, also
  in ``WORK_DIR/summary.json``; finished runs are reused.

Example (about 45 minutes on 2 cores)::

    python tools/dataset_converters/make_shapes_dataset.py --panoptic
    python tools/analysis_tools/benchmark_panoptic.py
"""
import argparse
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO_ROOT)

from mmengine.config import Config  # noqa: E402

from mmcentermask.utils.benchmark import panoptic_fpn_recipe_cfg  # noqa: E402
from mmcentermask.utils.training_runs import (  # noqa: E402
    recipe_benchmark_parser, recipe_run_config, report, seeded_runs)

TRAIN_SCRIPT = osp.join(REPO_ROOT, 'tools', 'train.py')
PANOPTIC_CONFIG = osp.join(
    REPO_ROOT, 'configs', 'centermask-panoptic',
    'panoptic-centermask-lite_vovnet-v2-19-slim-dw_fpn-64_1xb8-1600i_'
    'shapes.py')
MODELS = ('panoptic-centermask-lite', 'panoptic-fpn')
#: figure name -> key logged by the evaluation
METRIC_KEYS = {
    name: f'coco_panoptic/{name}'
    for name in ('PQ', 'SQ', 'RQ', 'PQ_th', 'PQ_st')
}
#: printed figures: key in result.json -> column title
FIGURES = {
    'PQ': 'PQ',
    'SQ': 'SQ',
    'RQ': 'RQ',
    'PQ_th': 'PQ things',
    'PQ_st': 'PQ stuff',
    'train_minutes': 'training (min)',
    'train_s_per_iter': 's / train iter',
    'infer_s_per_image': 's / image (inference)',
}


def parse_args() -> argparse.Namespace:
    return recipe_benchmark_parser(
        __doc__.splitlines()[0],
        MODELS,
        seeds=[0],
        data_root='data/shapes_panoptic/',
        work_dir='work_dirs/panoptic').parse_args()


def run_config(model: str, seed: int, args: argparse.Namespace) -> Config:
    """The training config of one run: the model's, seeded, on
    ``--data-root``, with ``--iters`` iterations if given."""
    cfg = Config.fromfile(PANOPTIC_CONFIG)
    if model == 'panoptic-fpn':
        cfg = panoptic_fpn_recipe_cfg(cfg)
    data_root = osp.join(args.data_root, '')
    for loader in (cfg.train_dataloader, cfg.val_dataloader,
                   cfg.test_dataloader):
        loader.dataset.data_root = data_root
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        evaluator.ann_file = data_root + 'annotations/panoptic_val.json'
        evaluator.seg_prefix = data_root + 'annotations/panoptic_val/'
    return recipe_run_config(cfg, seed, args.iters)


def main() -> None:
    args = parse_args()
    val_json = osp.join(args.data_root, 'annotations', 'panoptic_val.json')
    if not osp.exists(val_json):
        raise SystemExit(
            f'no panoptic shapes dataset at {args.data_root}: make it with '
            'python tools/dataset_converters/make_shapes_dataset.py '
            f'--panoptic --out {args.data_root}')
    results = seeded_runs(args.models, args.seeds,
                          lambda model, seed: run_config(model, seed, args),
                          METRIC_KEYS, TRAIN_SCRIPT, args)
    report(results, FIGURES, args.work_dir)


if __name__ == '__main__':
    main()
