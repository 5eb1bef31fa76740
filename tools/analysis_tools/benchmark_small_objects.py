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
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO_ROOT)

from mmengine.config import Config  # noqa: E402

from mmcentermask.utils.benchmark import mask_rcnn_recipe_cfg  # noqa: E402
from mmcentermask.utils.training_runs import (  # noqa: E402
    recipe_benchmark_parser, recipe_run_config, report, seeded_runs)

TRAIN_SCRIPT = osp.join(REPO_ROOT, 'tools', 'train.py')
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
#: figure name -> key logged by the evaluation
METRIC_KEYS = {
    'segm_mAP': 'coco/segm_mAP',
    'segm_mAP_s': 'coco/segm_mAP_s',
    'bbox_mAP': 'coco/bbox_mAP',
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
    return recipe_benchmark_parser(
        __doc__.splitlines()[0],
        MODELS,
        seeds=[0, 1, 2],
        data_root='data/shapes/',
        work_dir='work_dirs/small_objects').parse_args()


def run_config(model: str, seed: int, args: argparse.Namespace) -> Config:
    """The training config of one run: the model's, seeded, on
    ``--data-root``, with ``--iters`` iterations if given."""
    cfg = Config.fromfile(MODELS[model])
    if model == 'mask-rcnn':
        cfg = mask_rcnn_recipe_cfg(cfg)
    data_root = osp.join(args.data_root, '')
    for loader in (cfg.train_dataloader, cfg.val_dataloader,
                   cfg.test_dataloader):
        loader.dataset.data_root = data_root
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        evaluator.ann_file = data_root + 'annotations/val.json'
    return recipe_run_config(cfg, seed, args.iters)


def main() -> None:
    args = parse_args()
    if not osp.exists(osp.join(args.data_root, 'annotations', 'val.json')):
        raise SystemExit(
            f'no shapes dataset at {args.data_root}: make it with python '
            'tools/dataset_converters/make_shapes_dataset.py --out '
            f'{args.data_root}')
    results = seeded_runs(args.models, args.seeds,
                          lambda model, seed: run_config(model, seed, args),
                          METRIC_KEYS, TRAIN_SCRIPT, args)
    report(results, FIGURES, args.work_dir)


if __name__ == '__main__':
    main()
