"""CPU inference latency of CenterMask at two versions of this package, on
the same weights and image, measured alternately in one run.

Each checkout (a git worktree of any commit, e.g. ``git worktree add
/tmp/base ad117a2``) is imported in its own process (``PYTHONPATH``), builds
the model of its own copy of ``--config`` (the path is relative to each
checkout's root, so each version runs its own settings) with the converted
golden centermask2 weights of
this checkout's ``tests/data/golden`` and times ``model.test_step`` on the
golden coffee photograph resized to the config's test size (realistic
candidate counts, the config's post-processing). The rounds alternate
between the checkouts so that other load on the machine hits both alike;
the figure is the median over rounds of each checkout's fastest run.

Example::

    git worktree add /tmp/base ad117a2
    python tools/analysis_tools/compare_commits.py /tmp/base . \\
        --config configs/centermask/centermask_vovnet-v2-39_fpn_ms-3x_coco.py
"""
import argparse
import os
import os.path as osp
import statistics
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.append(REPO_ROOT)

from mmcentermask.utils.benchmark import run_in_checkout  # noqa: E402

VARIANTS = {
    'centermask-lite_vovnet-v2-19-slim-dw_fpn_ms-4x_coco.py':
    'lite_v19_slim_dw',
    'centermask_vovnet-v2-39_fpn_ms-3x_coco.py': 'v39',
}

# Runs inside the checkout under test: only APIs present in every version.
WORKER = r'''
import json, sys, time
import numpy as np
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.utils import register_all_modules
from mmengine.config import Config
import mmcentermask
from mmcentermask.converters.centermask2 import convert_centermask2

(golden, variant, config, runs, threads, fuse, channels_last, compile_network,
 bfloat16, reuse_memory) = sys.argv[1:11]
torch.set_num_threads(int(threads))
if reuse_memory == '1':
    from mmcentermask.utils.cpu_memory import reuse_cpu_memory
    assert reuse_cpu_memory()
register_all_modules()
sys.path.insert(0, golden)
import make_weights
weights = make_weights.build_state_dict(
    make_weights.load_manifest(f'{golden}/{variant}/manifest.json'))
cfg = Config.fromfile(config)
if channels_last == '1':
    cfg.model.channels_last = True
model = MODELS.build(cfg.model)
model.load_state_dict(convert_centermask2(weights, config).state_dict)
model.eval()
if fuse == '1':
    from mmcv.cnn import fuse_conv_bn
    fuse_conv_bn(model.backbone)
if compile_network == '1':
    model.backbone.compile()
    model.neck.compile()
with np.load(f'{golden}/{variant}/coffee_infer.npz') as data:
    image = torch.from_numpy(data['input_image'])
    ori = tuple(int(v) for v in data['orig_hw'])
    scale = tuple(float(v) for v in data['scale_xy'])
times = []
precision = torch.autocast('cpu', dtype=torch.bfloat16, enabled=bfloat16 == '1')
with torch.no_grad(), precision:
    for _ in range(int(runs) + 1):
        sample = DetDataSample(metainfo=dict(
            img_id=0, ori_shape=ori, img_shape=tuple(image.shape[1:]),
            scale_factor=scale))
        start = time.perf_counter()
        out = model.test_step(dict(inputs=[image], data_samples=[sample]))
        times.append(1000 * (time.perf_counter() - start))
print(json.dumps(dict(ms=min(times[1:]), dets=len(out[0].pred_instances))))
'''


def run_once(checkout: str, config: str, args: argparse.Namespace,
             options: bool) -> dict:
    """One process in ``checkout``: its fastest of ``--runs`` timed runs
    of ``config`` (relative to the checkout's root); ``options``: with
    ``--fuse-conv-bn``, ``--channels-last``, ``--compile``, ``--bf16``,
    ``--reuse-cpu-memory``."""
    golden = osp.join(REPO_ROOT, 'tests', 'data', 'golden')
    config = osp.join(osp.abspath(checkout), config)
    try:
        return run_in_checkout(checkout, [
            '-c', WORKER, golden, VARIANTS[osp.basename(config)], config,
            str(args.runs),
            str(args.threads),
            str(int(options and args.fuse_conv_bn)),
            str(int(options and args.channels_last)),
            str(int(options and args.compile)),
            str(int(options and args.bf16)),
            str(int(options and args.reuse_cpu_memory))
        ])
    except RuntimeError as error:
        sys.exit(str(error))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('base', help='checkout of the baseline version')
    parser.add_argument('new', help='checkout of the version to compare')
    parser.add_argument(
        '--config',
        required=True,
        help='a config with golden weights, relative to the checkouts\' '
        f'root: {sorted(VARIANTS)}')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument(
        '--fuse-conv-bn',
        action='store_true',
        help='new checkout: BN folded into the backbone convs '
        '(FuseConvBNHook)')
    parser.add_argument(
        '--channels-last',
        action='store_true',
        help='new checkout: channels_last=True (without it, each checkout '
        "its default: NHWC on the CPU since channels_last='cpu')")
    parser.add_argument(
        '--compile',
        action='store_true',
        help='new checkout: backbone and FPN compiled with torch.compile '
        '(CompileNetworkHook), compilation in the untimed first run')
    parser.add_argument(
        '--bf16',
        action='store_true',
        help='new checkout: under CPU bfloat16 autocast, as tools/test.py '
        'runs with --cfg-options test_cfg.fp16=True (changes results '
        'beyond float32 rounding; opt-in)')
    parser.add_argument(
        '--reuse-cpu-memory',
        action='store_true',
        help='new checkout: freed CPU memory stays mapped for the next run '
        '(ReuseCPUMemoryHook; outputs unchanged)')
    args = parser.parse_args()
    if osp.basename(args.config) not in VARIANTS:
        parser.error(f'--config must be one of {sorted(VARIANTS)}')
    config = osp.relpath(osp.abspath(args.config), REPO_ROOT)
    best = {args.base: [], args.new: []}
    for _ in range(args.rounds):
        for checkout in (args.base, args.new):
            result = run_once(checkout, config, args, checkout == args.new)
            best[checkout].append(result['ms'])
            print(f'  {checkout}: {result["ms"]:.0f} ms, '
                  f'{result["dets"]} detections', flush=True)
    base = statistics.median(best[args.base])
    new = statistics.median(best[args.new])
    options = [
        o for o in ('fuse_conv_bn', 'channels_last', 'compile', 'bf16',
                    'reuse_cpu_memory') if getattr(args, o)
    ]
    print(f'{osp.basename(config)}, {args.threads} threads, new with '
          f'{options or "defaults"}: base {base:.0f} '
          f'ms, new {new:.0f} ms, new / base = {new / base:.2f} '
          f'(load average {os.getloadavg()[0]:.1f})')


if __name__ == '__main__':
    main()
