"""CPU forward latency and peak memory of VoVNet variants against
MMDetection's ResNet-50, backbone only.

Method:

* latency: median wall-clock time of ``--repeat`` timed forward passes after
  ``--warmup`` untimed ones; ``model.eval()``, ``torch.no_grad()``, batch 1,
  random input of each ``--sizes`` entry (H x W, pixels), ``--threads``
  intra-op threads; all four stages are computed (stage2-5, strides 4-32).
  The median process CPU time of the same passes is reported too: on a
  machine shared with other jobs it varies less than wall-clock time.
* peak memory: every (model, size) pair runs in a fresh process; the figure is
  that process's peak resident set size (``resource.getrusage(...).ru_maxrss``)
  minus its RSS just before the first forward pass (model built, weights
  resident), i.e. the extra memory the forward passes needed (activations,
  workspaces, allocator caching).

Example::

    python tools/analysis_tools/benchmark_vovnet.py --repeat 3 --warmup 1 \\
        --sizes 800x1333 600x1000 --threads 2
"""
import argparse
import os
import os.path as osp
import platform
import resource
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Dict, List, Tuple

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

BASELINE = 'ResNet-50'
DEFAULT_VARIANTS = ('V-19-slim-dw', 'V-19-dw', 'V-19-slim', 'V-19', 'V-39',
                    'V-57', 'V-99')


def parse_size(text: str) -> Tuple[int, int]:
    height, width = text.lower().split('x')
    return int(height), int(width)


def build(name: str):
    """``'ResNet-50'`` (mmdet ResNet, depth 50) or a VoVNet arch name."""
    if name == BASELINE:
        from mmdet.models.backbones import ResNet
        return ResNet(depth=50, out_indices=(0, 1, 2, 3))
    from mmcentermask.models.backbones.vovnet import VoVNet
    return VoVNet(name, out_indices=(0, 1, 2, 3))


def current_rss_mb() -> float:
    import psutil
    return psutil.Process().memory_info().rss / 2**20


def measure(name: str, size: Tuple[int, int], repeat: int, warmup: int,
            threads: int) -> Dict[str, float]:
    """Runs in its own process; returns wall and CPU time per forward (ms),
    forward peak memory (MiB) and parameters (M)."""
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build(name)
    model.eval()  # mmdet's ResNet.train() returns None, so no chaining
    x = torch.rand(1, 3, *size)
    params = sum(p.numel() for p in model.parameters())
    rss_before = current_rss_mb()
    wall, cpu = [], []
    with torch.no_grad():
        for i in range(warmup + repeat):
            start, start_cpu = time.perf_counter(), time.process_time()
            model(x)
            if i >= warmup:
                wall.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return dict(
        latency_ms=1000 * statistics.median(wall),
        cpu_ms=1000 * statistics.median(cpu),
        peak_mb=peak_mb - rss_before,
        params_m=params / 1e6)


def run(names: List[str], sizes: List[Tuple[int, int]], repeat: int,
        warmup: int, threads: int) -> Dict[Tuple[str, Tuple[int, int]], dict]:
    results = {}
    for size in sizes:
        for name in [BASELINE] + names:
            with ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=get_context('spawn'),
                    max_tasks_per_child=1) as pool:
                results[name, size] = pool.submit(measure, name, size, repeat,
                                                  warmup, threads).result()
            r = results[name, size]
            print(
                f'  {name:>13s} {size[0]}x{size[1]}: '
                f'{r["latency_ms"]:8.0f} ms wall, '
                f'{r["cpu_ms"]:8.0f} ms CPU, {r["peak_mb"]:7.0f} MiB',
                flush=True)
    return results


def table(names: List[str], sizes: List[Tuple[int, int]],
          results: Dict[Tuple[str, Tuple[int, int]], dict]) -> str:
    lines = [
        '| backbone | params (M) | input (HxW) | latency (ms) | x R-50 '
        '| CPU time (ms) | x R-50 | forward peak RSS (MiB) | x R-50 |',
        '|---|---|---|---|---|---|---|---|---|'
    ]
    for size in sizes:
        base = results[BASELINE, size]
        for name in [BASELINE] + names:
            r = results[name, size]
            cells = [name, f'{r["params_m"]:.1f}', f'{size[0]}x{size[1]}']
            for key in ('latency_ms', 'cpu_ms', 'peak_mb'):
                cells += [f'{r[key]:.0f}', f'{r[key] / base[key]:.2f}']
            lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def cpu_model() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown CPU'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        '--variants',
        nargs='+',
        default=DEFAULT_VARIANTS,
        help='VoVNet arch names')
    parser.add_argument(
        '--sizes',
        nargs='+',
        default=['800x1333', '600x1000'],
        help='input sizes HxW')
    parser.add_argument(
        '--repeat',
        type=int,
        default=10,
        help='timed forward passes (median is reported)')
    parser.add_argument(
        '--warmup', type=int, default=2, help='untimed forward passes first')
    parser.add_argument(
        '--threads', type=int, default=2, help='torch intra-op threads')
    args = parser.parse_args()
    if args.repeat < 1 or args.warmup < 0:
        parser.error('--repeat must be >= 1 and --warmup >= 0')

    import torch
    sizes = [parse_size(s) for s in args.sizes]
    load = ', '.join(f'{v:.1f}' for v in os.getloadavg())
    print(
        f'CPU: {cpu_model()}, {os.cpu_count()} logical CPUs, load average '
        f'{load}; {args.threads} torch threads; torch {torch.__version__}; '
        f'repeat {args.repeat}, warmup {args.warmup}, batch 1, no_grad, '
        'eval',
        flush=True)
    results = run(
        list(args.variants), sizes, args.repeat, args.warmup, args.threads)
    print(table(list(args.variants), sizes, results))


if __name__ == '__main__':
    main()
