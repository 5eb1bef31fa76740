"""Recipe comparisons that train every model for real
(``tools/analysis_tools/benchmark_small_objects.py`` and
``benchmark_panoptic.py``): one run per (seed, model) with ``tools/train.py``
in a process of its own, the figures it logged, its inference time, the
finished runs cached, and the mean and spread over the seeds.
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
from typing import Callable, Dict, List, Optional, Sequence

from mmengine.config import Config

#: where :func:`cached_run` keeps a finished run's figures
RESULT_FILE = 'result.json'
#: the training config of a (model name, seed)
RunConfig = Callable[[str, int], Config]
#: figure name -> the key its evaluation logs (``'PQ': 'coco_panoptic/PQ'``)
MetricKeys = Dict[str, str]


def recipe_benchmark_parser(description: str, models: Sequence[str],
                            seeds: Sequence[int], data_root: str,
                            work_dir: str) -> argparse.ArgumentParser:
    """The arguments of a recipe comparison, with its defaults: ``--seeds``,
    ``--models`` (among ``models``, all by default), ``--iters`` (the
    config's by default), ``--data-root``, ``--work-dir``, ``--threads`` (2)
    and ``--infer-images`` (20)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--seeds', type=int, nargs='+', default=list(seeds))
    parser.add_argument(
        '--models', nargs='+', choices=list(models), default=list(models))
    parser.add_argument(
        '--iters',
        type=int,
        default=None,
        help='training iterations (default: the config\'s)')
    parser.add_argument('--data-root', default=data_root)
    parser.add_argument('--work-dir', default=work_dir)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--infer-images', type=int, default=20)
    return parser


def seeded_runs(models: Sequence[str], seeds: Sequence[int],
                run_config: RunConfig, metric_keys: MetricKeys,
                train_script: str, args: argparse.Namespace) -> List[dict]:
    """Every (seed, model) run, seed by seed and the models in turn (so
    that other load on the machine hits all alike), each trained,
    evaluated and timed (:func:`measured_run`) in
    ``args.work_dir/MODEL/seed-N`` unless it finished before
    (:func:`cached_run`).

    Args:
        models (Sequence[str]): Model names.
        seeds (Sequence[int]): Seeds.
        run_config (RunConfig): The training config of a (model, seed).
        metric_keys (dict[str, str]): Figure name -> logged metric key.
        train_script (str): ``tools/train.py``.
        args (argparse.Namespace): The benchmark's ``work_dir``,
            ``data_root`` (its ``val/*.png`` are timed), ``infer_images``
            and ``threads``.

    Returns:
        list[dict]: Per run: ``model``, ``seed`` and the figures.
    """
    images = sorted(glob.glob(osp.join(args.data_root, 'val', '*.png')))
    images = images[:args.infer_images + 2]
    results = []
    for seed in seeds:
        for model in models:
            work_dir = osp.join(args.work_dir, model, f'seed-{seed}')
            results.append(
                cached_run(
                    work_dir, lambda: dict(
                        model=model,
                        seed=seed,
                        **measured_run(
                            run_config(model, seed), work_dir, train_script,
                            metric_keys, images, args.threads))))
    return results


def cached_run(work_dir: str, run: Callable[[], dict]) -> dict:
    """The figures of the run in ``work_dir``: read from its
    :data:`RESULT_FILE` if it finished before, else ``run()``, saved there."""
    result_file = osp.join(work_dir, RESULT_FILE)
    if osp.exists(result_file):
        with open(result_file) as f:
            return json.load(f)
    result = run()
    os.makedirs(work_dir, exist_ok=True)
    with open(result_file, 'w') as f:
        json.dump(result, f, indent=1)
    return result


def recipe_run_config(cfg: Config,
                      seed: int,
                      iters: Optional[int] = None) -> Config:
    """``cfg`` seeded with ``seed`` (``randomness.seed``) and, if ``iters``
    is given, shortened to ``iters`` iterations, evaluated at the end."""
    cfg.randomness = dict(seed=seed)
    if iters is not None:
        cfg.train_cfg.max_iters = iters
        cfg.train_cfg.val_interval = iters
    return cfg


def measured_run(cfg: Config, work_dir: str, train_script: str,
                 metric_keys: MetricKeys, images: List[str],
                 threads: int) -> dict:
    """Train and evaluate ``cfg`` (:func:`train_and_evaluate`), then time
    inference with its last checkpoint on ``images``
    (:func:`inference_time`).

    Returns:
        dict: ``train_minutes``, ``infer_s_per_image`` and the
        :func:`logged_figures`.
    """
    minutes = train_and_evaluate(cfg, work_dir, train_script, threads)
    infer = inference_time(
        osp.join(work_dir, 'config.py'), work_dir, images, threads)
    return dict(
        train_minutes=minutes,
        infer_s_per_image=infer,
        **logged_figures(work_dir, metric_keys))


def train_and_evaluate(cfg: Config, work_dir: str, train_script: str,
                       threads: int) -> float:
    """Write ``cfg`` to ``work_dir/config.py`` and train it (with the
    evaluations its ``train_cfg`` asks for) through ``train_script``
    (``tools/train.py``) in a process of its own, ``OMP_NUM_THREADS`` =
    ``threads``.

    Returns:
        float: Wall-clock minutes of the whole process (start-up, training,
        evaluation).

    Raises:
        subprocess.CalledProcessError: The training failed.
    """
    os.makedirs(work_dir, exist_ok=True)
    config = osp.join(work_dir, 'config.py')
    cfg.dump(config)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, train_script, config, '--work-dir', work_dir],
        check=True,
        env=env)
    return (time.perf_counter() - start) / 60


def logged_figures(work_dir: str, metric_keys: MetricKeys) -> Dict[str, float]:
    """The last evaluation's metrics and the mean seconds per training
    iteration, from the run's ``scalars.json``.

    Args:
        work_dir (str): The run's work directory.
        metric_keys (dict[str, str]): Figure name -> logged key (e.g.
            ``'segm_mAP': 'coco/segm_mAP'``).

    Returns:
        dict: Each figure of ``metric_keys`` (0 where no evaluation logged
        it: MMDetection's ``CocoMetric`` logs nothing when a model detects
        nothing in the whole split), ``train_s_per_iter`` (the mean of
        MMEngine's logged ``time`` after the first logging interval) and
        ``detected_nothing``.

    Raises:
        RuntimeError: The run logged no training iteration.
    """
    scalars = sorted(
        glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))[-1]
    with open(scalars) as f:
        records = [json.loads(line) for line in f]
    if not any('loss' in r for r in records):
        raise RuntimeError(f'{scalars} logs no training iteration')
    times = [r['time'] for r in records if 'loss' in r and 'time' in r]
    first_key = next(iter(metric_keys.values()))
    metrics = [r for r in records if first_key in r]
    final = metrics[-1] if metrics else {}
    figures = {name: final.get(key, 0.) for name, key in metric_keys.items()}
    return dict(
        figures,
        train_s_per_iter=statistics.mean(times[1:] or times),
        detected_nothing=not metrics)


def inference_time(config: str, work_dir: str, images: List[str],
                   threads: int) -> float:
    """Median seconds of ``mmdet.apis.inference_detector`` (loading,
    pipeline, model, pasted masks) per image of ``images``, one at a time,
    after two warm-up images, with the run's last checkpoint and
    ``torch.set_num_threads(threads)``."""
    import torch
    from mmdet.apis import inference_detector, init_detector
    torch.set_num_threads(threads)
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    model = init_detector(config, checkpoint, device='cpu')
    times = []
    for image in images:
        start = time.perf_counter()
        inference_detector(model, image)
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:] or times)


def summarize(results: List[dict],
              figures: Dict[str, str]) -> Dict[str, Dict[str, List[float]]]:
    """Per model and figure (the keys of ``figures``): [mean, sample
    standard deviation] over its runs, and the list of its ``seeds``."""
    summary = {}
    for model in dict.fromkeys(r['model'] for r in results):
        runs = [r for r in results if r['model'] == model]
        summary[model] = {
            key: [
                statistics.mean(r[key] for r in runs),
                statistics.stdev(r[key] for r in runs) if len(runs) > 1 else 0.
            ]
            for key in figures
        }
        summary[model]['seeds'] = [r['seed'] for r in runs]
    return summary


def print_table(results: List[dict], summary: dict,
                figures: Dict[str, str]) -> None:
    """One Markdown row per run, then one per model with mean +- spread;
    ``figures``: result key -> column title."""
    print('| model | seed | ' + ' | '.join(figures.values()) + ' |')
    print('|' + ' --- |' * (len(figures) + 2))
    for r in results:
        print(f"| {r['model']} | {r['seed']} | " +
              ' | '.join(f'{r[key]:.3f}' for key in figures) + ' |')
    print()
    print('| model | seeds | ' + ' | '.join(figures.values()) + ' |')
    print('|' + ' --- |' * (len(figures) + 2))
    for model, spread in summary.items():
        seeds = ', '.join(map(str, spread['seeds']))
        print(f'| {model} | {seeds} | ' +
              ' | '.join(f'{spread[key][0]:.3f} +- {spread[key][1]:.3f}'
                         for key in figures) + ' |')


def report(results: List[dict], figures: Dict[str, str],
           work_dir: str) -> None:
    """Summarize ``results`` (:func:`summarize`), write runs and summary to
    ``work_dir/summary.json`` and print the tables (:func:`print_table`)."""
    summary = summarize(results, figures)
    with open(osp.join(work_dir, 'summary.json'), 'w') as f:
        json.dump(dict(runs=results, summary=summary), f, indent=1)
    print_table(results, summary, figures)
