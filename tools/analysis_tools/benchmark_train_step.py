"""CPU time of the training iteration of a config, stage by stage, at one or
two versions of this package, on the same seeded iterations.

Method:

* each checkout (``--repo``, default this one; a git worktree of any commit,
  e.g. ``git worktree add /tmp/base ad117a2``) runs in its own process with
  ``PYTHONPATH`` set to it, as ``compare_commits.py`` does, and builds
  MMEngine's ``Runner`` from its own copy of ``CONFIG`` (seeded by the
  config's ``randomness``), with the real training dataloader in the
  process (``num_workers=0``; data paths are relative to the current
  directory, for every checkout) and optionally the weights of
  ``--checkpoint`` (e.g. a late-training checkpoint: the number of positive
  RoIs, hence the mask work, grows during training);
* it runs ``--warmup`` untimed and ``--iters`` timed iterations of
  ``model.train_step`` (data preprocessor, forward, losses, backward,
  gradient clipping and the optimizer step; no hooks, no learning-rate
  schedule) and takes the process CPU time of each stage
  (``time.process_time``; ``torch.set_num_threads(--threads)``, 1 by
  default, so the CPU time is the work done whatever else runs on the
  machine). ``--wall`` takes wall-clock time instead (for several threads:
  their CPU time would count OpenMP's spin-waiting; then the machine
  should be otherwise idle). Stages are methods present in every version
  (:data:`STAGES`); a stage whose module the model lacks (a Mask R-CNN
  config has no FCOS head nor MaskIoU head) is left out of its table; each
  row is inclusive, ``(rest)`` rows are the parent's time outside its
  listed children. Loading the batch (dataset pipeline and
  collate) is timed too but kept out of s/iter: the configs load in a
  dataloader worker, in parallel with the step;
* with several checkouts the rounds alternate between them, so that other
  load hits all alike; the figure of a checkout is the median over rounds of
  its mean s/iter. The losses of every iteration are compared with the
  first checkout's (same seed, same data: equal up to float rounding unless
  the results changed).

Example::

    git worktree add /tmp/base ad117a2
    python tools/analysis_tools/benchmark_train_step.py \\
        configs/centermask/centermask-lite_vovnet-v2-19-slim-dw_fpn-64_1xb8-1600i_shapes.py \\
        --repo /tmp/base . --iters 10 --rounds 3
"""
import argparse
import json
import os
import os.path as osp
import statistics
import sys
import time
from typing import Callable, Dict, List

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

#: (stage, parent, object path from the model, method): the timed methods
#: (inclusive CPU time), all named alike at every version of the package.
STAGES = [
    ('data preprocessor', 'train step', 'data_preprocessor', 'forward'),
    ('forward + losses', 'train step', '', 'loss'),
    ('backbone + neck', 'forward + losses', '', 'extract_feat'),
    ('FCOS head forward', 'forward + losses', 'bbox_head', 'forward'),
    ('FCOS targets + losses', 'forward + losses', 'bbox_head', 'loss_by_feat'),
    ('FCOS training detections', 'forward + losses', 'bbox_head',
     'predict_by_feat'),
    ('RoI head (assign to losses)', 'forward + losses', 'roi_head', 'loss'),
    ('assign + sample', 'RoI head (assign to losses)', 'roi_head', '_sample'),
    ('RoI pooling', 'RoI head (assign to losses)',
     'roi_head.mask_roi_extractor', 'forward'),
    ('mask head forward', 'RoI head (assign to losses)', 'roi_head.mask_head',
     'forward'),
    ('MaskIoU head forward', 'RoI head (assign to losses)',
     'roi_head.mask_iou_head', 'forward'),
    ('mask targets', 'RoI head (assign to losses)', 'roi_head.mask_head',
     'get_targets'),
    ('MaskIoU targets', 'RoI head (assign to losses)',
     'roi_head.mask_iou_head', 'get_targets'),
    ('backward', 'train step', 'optim_wrapper', 'backward'),
    ('clip + optimizer step', 'train step', 'optim_wrapper', 'step'),
]


def worker(args: argparse.Namespace) -> None:
    """Run the iterations in this process (the checkout on ``PYTHONPATH``)
    and print one JSON line: per-iteration stage times and losses."""
    import tempfile

    import torch
    from mmengine.config import Config
    from mmengine.runner import Runner, load_checkpoint

    torch.set_num_threads(args.threads)
    cfg = Config.fromfile(args.config)
    cfg.work_dir = tempfile.mkdtemp(prefix='benchmark_train_step_')
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    model = runner.model
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    if args.checkpoint:
        load_checkpoint(
            model, args.checkpoint, map_location='cpu', logger='silent')
    else:
        runner._init_model_weights()
    model.train()
    optim_wrapper = runner.optim_wrapper

    clock = time.perf_counter if args.wall else time.process_time
    times: Dict[str, float] = {}
    owners = dict(optim_wrapper=optim_wrapper)
    absent = []
    for stage, _, path, method in STAGES:
        owner = owners.get(path) or _attribute(model, path)
        if owner is None or not hasattr(owner, method):
            absent.append(stage)
            continue
        _time_method(owner, method, stage, times, clock)

    batches = iter(runner.build_dataloader(cfg.train_dataloader))
    iterations, losses = [], []
    for index in range(args.warmup + args.iters):
        times.clear()
        start = clock()
        data = next(batches)
        loaded = clock()
        log_vars = model.train_step(data, optim_wrapper)
        end = clock()
        losses.append({name: float(value) for name, value in log_vars.items()})
        if index >= args.warmup:
            iterations.append(
                dict(
                    times, **{
                        'load batch': loaded - start,
                        'train step': end - loaded
                    }))
    print(
        json.dumps(dict(iterations=iterations, losses=losses, absent=absent)))


def _attribute(root: object, path: str) -> object:
    """``root.a.b`` for ``path='a.b'`` (``root`` for ''); None if ``root``
    has no such attribute (Mask R-CNN has no ``bbox_head``)."""
    for name in filter(None, path.split('.')):
        root = getattr(root, name, None)
    return root


def _time_method(owner: object, method: str, stage: str,
                 times: Dict[str, float], clock: Callable[[], float]) -> None:
    """Wrap ``owner.method`` so that its inclusive time (seconds of
    ``clock``) is added to ``times[stage]``."""
    original = getattr(owner, method)

    def timed(*args, **kwargs):
        start = clock()
        try:
            return original(*args, **kwargs)
        finally:
            times[stage] = times.get(stage, 0.) + clock() - start

    setattr(owner, method, timed)


def stage_table(runs: List[dict]) -> List[str]:
    """Lines of the per-stage table: median over ``runs`` of the mean
    seconds per iteration, children indented under their parent; stages
    the model does not have (``absent``) are left out."""
    absent = set(runs[0].get('absent', []))
    present = [s for s in STAGES if s[0] not in absent]
    stages = ['load batch', 'train step'] + [s[0] for s in present]
    means = {}
    for stage in stages:
        means[stage] = statistics.median(
            statistics.fmean(
                times.get(stage, 0.) for times in run['iterations'])
            for run in runs)
    children: Dict[str, List[str]] = {}
    for stage, parent, _, _ in present:
        children.setdefault(parent, []).append(stage)

    lines = [f'  {"load batch":34s} {means["load batch"]:7.3f}']

    def add(stage: str, depth: int) -> None:
        lines.append(f'  {"  " * depth + stage:34s} {means[stage]:7.3f}')
        if stage in children:
            for child in children[stage]:
                add(child, depth + 1)
            rest = means[stage] - sum(means[c] for c in children[stage])
            lines.append(f'  {"  " * (depth + 1) + "(rest)":34s} '
                         f'{rest:7.3f}')

    add('train step', 0)
    return lines


def loss_differences(base: dict, other: dict) -> List[float]:
    """Largest relative difference of any loss, per iteration (warm-up
    included; the first one is before any optimizer step)."""
    return [
        max(
            abs(other_losses[name] - value) / max(abs(value), 1e-12)
            for name, value in base_losses.items())
        for base_losses, other_losses in zip(base['losses'], other['losses'])
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument(
        'config', help='config path, relative to the root of each checkout')
    parser.add_argument(
        '--repo',
        nargs='+',
        default=[REPO_ROOT],
        help='checkouts to time; the first is the reference of the ratios '
        'and the loss comparison')
    parser.add_argument('--checkpoint', help='weights to start from')
    parser.add_argument('--iters', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--rounds', type=int, default=1)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument(
        '--wall',
        action='store_true',
        help='wall-clock instead of process CPU time')
    parser.add_argument(
        '--worker', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    # the parent only: a worker imports its own checkout's package
    sys.path.append(REPO_ROOT)
    from mmcentermask.utils.benchmark import run_in_checkout

    checkpoint = osp.abspath(args.checkpoint) if args.checkpoint else None
    argv = [
        '--worker', '--iters',
        str(args.iters), '--warmup',
        str(args.warmup), '--threads',
        str(args.threads)
    ]
    if checkpoint:
        argv += ['--checkpoint', checkpoint]
    if args.wall:
        argv.append('--wall')
    # runs[i]: the rounds of args.repo[i] (one checkout may be given twice)
    runs: List[List[dict]] = [[] for _ in args.repo]
    for round_index in range(args.rounds):
        for repo, repo_runs in zip(args.repo, runs):
            config = osp.join(osp.abspath(repo), args.config)
            result = run_in_checkout(
                repo, [osp.abspath(__file__), config] + argv, cwd=os.getcwd())
            repo_runs.append(result)
            seconds = statistics.fmean(times['train step']
                                       for times in result['iterations'])
            print(
                f'round {round_index + 1}, {repo}: {seconds:.3f} s/iter',
                flush=True)

    clock = 'wall-clock' if args.wall else 'CPU'
    reference = args.repo[0]
    reference_s = _median_s_per_iter(runs[0])
    for index, (repo, repo_runs) in enumerate(zip(args.repo, runs)):
        seconds = _median_s_per_iter(repo_runs)
        print(f'\n{repo}: {seconds:.3f} {clock} s/iter (median over '
              f'{args.rounds} rounds of the mean of {args.iters} iterations), '
              f'{seconds / reference_s:.2f}x {reference}')
        print('\n'.join(stage_table(repo_runs)))
        absent = repo_runs[0].get('absent', [])
        if absent:
            print(f'  not in this model: {absent}')
        never = [
            stage for stage, *_ in STAGES
            if stage not in absent and not any(stage in times
                                               for run in repo_runs
                                               for times in run['iterations'])
        ]
        if never:
            print(f'  never called: {never}')
        if index > 0:
            differences = loss_differences(runs[0][0], repo_runs[0])
            print('  largest relative loss difference per iteration: ' +
                  ' '.join(f'{d:.1e}' for d in differences))
    print(f'\n{args.threads} thread(s), load average '
          f'{os.getloadavg()[0]:.1f}')


def _median_s_per_iter(runs: List[dict]) -> float:
    """Median over rounds of the mean train-step CPU time."""
    return statistics.median(
        statistics.fmean(times['train step'] for times in run['iterations'])
        for run in runs)


if __name__ == '__main__':
    main()
