"""Inference latency and peak memory of CenterMask(-Lite) against
MMDetection's Mask R-CNN with the same backbone and input.

Method:

* models: each CenterMask config of ``--models`` and a Mask R-CNN built from
  ``mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py`` with the backbone swapped
  for the CenterMask config's (same arch, norm and data preprocessor) and
  ``out_indices`` extended by the stride-4 stage, so its FPN gets C2-C5 (the
  C3-C5 channels are CenterMask's FPN in-channels; Mask R-CNN pools from P2).
  The rest of Mask R-CNN (256-channel FPN, RPN, 2-fc box head, 4-conv mask
  head, 80 classes) is MMDetection's. Random weights (``init_weights``).
  ``--channels-last`` adds each CenterMask with ``channels_last=True``
  (NHWC tensors; Mask R-CNN stays NCHW: stock mmdet models do not guard
  mmcv's NCHW-only RoIAlign).
* work timed: ``model.test_step`` on one random uint8 image of ``--size``
  (original size = input size, so no resize), i.e. data preprocessor
  (normalise, pad to 32), backbone, neck, heads, box post-processing, mask
  head and pasting of the masks onto the image canvas; ``model.eval()``,
  ``torch.no_grad()``, batch 1. Latency is the median wall-clock time of
  ``--repeat`` runs after ``--warmup`` untimed ones (CUDA: synchronised
  before and after each run); on CPU the median process CPU time is given
  too (less sensitive to other jobs on a shared machine).
* detections: random weights give random numbers of detections. By default
  both models keep every candidate (score threshold ``--score-thr`` 0) and
  ``--max-dets`` (50, CenterMask's test setting) detections, so each pastes
  that many masks (column "masks"). ``--config-post-processing`` keeps each
  config's own thresholds instead. Mask pasting costs in proportion to the
  box area, and an initialised FCOS head regresses distances of about 0
  (empty boxes, which CenterMask drops); so the FCOS regression bias is set
  to predict boxes of side 8 x stride at every location, the size of Mask
  R-CNN's anchors (``scales=[8]``) on that level, whose random-weight
  detections are about their anchors.
* counted: ATen operators of one post-backbone pass (heads, post-processing
  and pasting; features computed once), with ``torch.profiler``; on CUDA
  also the host-device synchronisations of that pass
  (``torch.cuda.set_sync_debug_mode``). ``--nms-mode`` picks CenterMask's
  FCOS NMS (``auto``: centermask2's rule, ``exact``: class by class,
  ``batched``: one offset call). The building blocks are in
  :mod:`mmcentermask.utils.benchmark`.
* peak memory: every model runs in a fresh process. CPU: the peak resident
  set size during the runs (``VmHWM`` of ``/proc/self/status``, reset through
  ``/proc/self/clear_refs`` after the model is built; ``ru_maxrss`` of
  ``getrusage`` where that is unavailable, which then includes the build)
  minus the RSS just before the first run, i.e. the memory the inference
  needed on top of the resident model; the whole-process peak is given too.
  CUDA: ``torch.cuda.max_memory_allocated`` during the runs minus the memory
  allocated before them.

Example::

    python tools/analysis_tools/benchmark_centermask.py --repeat 3 \\
        --warmup 1 --threads 2
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
from typing import Dict, List, Optional, Tuple

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

CONFIG_DIR = osp.join(REPO_ROOT, 'configs', 'centermask')
MODELS = {
    'centermask-lite_v2-19-slim-dw':
    'centermask-lite_vovnet-v2-19-slim-dw_fpn_ms-4x_coco.py',
    'centermask-lite_v2-39': 'centermask-lite_vovnet-v2-39_fpn_ms-4x_coco.py',
    'centermask_v2-39': 'centermask_vovnet-v2-39_fpn_ms-3x_coco.py',
}
GOLDEN_DIR = osp.join(REPO_ROOT, 'tests', 'data', 'golden')
#: configs whose golden centermask2 weights exist -> golden variant
GOLDEN_VARIANTS = {
    'centermask-lite_vovnet-v2-19-slim-dw_fpn_ms-4x_coco.py':
    'lite_v19_slim_dw',
    'centermask_vovnet-v2-39_fpn_ms-3x_coco.py': 'v39',
}
KINDS = ('CenterMask', 'Mask R-CNN')
CHANNELS_LAST = 'CenterMask channels-last'


def parse_size(text: str) -> Tuple[int, int]:
    """``'800x1333'`` -> (800, 1333) (height, width)."""
    height, width = text.lower().split('x')
    return int(height), int(width)


def config_path(model: str) -> str:
    """A name of :data:`MODELS` or a config path -> absolute config path."""
    if model in MODELS:
        return osp.join(CONFIG_DIR, MODELS[model])
    return osp.abspath(model)


def test_size(cfg) -> Tuple[int, int]:
    """(h, w) of the test ``Resize`` of a config (its ``scale`` is (w, h))."""
    resize, = [
        t for t in cfg.test_dataloader.dataset.pipeline
        if t['type'] == 'Resize'
    ]
    width, height = resize['scale']
    return height, width


def is_centermask(kind: str) -> bool:
    """Whether a benchmark row is one of the CenterMask variants."""
    return kind.startswith('CenterMask')


def golden_variant(config: str) -> str:
    """The golden variant of a config, or SystemExit naming the configs
    that have golden weights."""
    variant = GOLDEN_VARIANTS.get(osp.basename(config))
    if variant is None:
        sys.exit(f'--golden-weights: no golden weights for {config}; '
                 f'available for {sorted(GOLDEN_VARIANTS)}')
    return variant


def load_golden_weights(model, config: str, kind: str) -> None:
    """The converted golden centermask2 weights (deterministic synthetic
    weights of ``tests/data/golden``): the whole CenterMask, or the
    backbone of the Mask R-CNN."""
    import importlib.util

    from mmcentermask.converters import convert_centermask2
    variant = golden_variant(config)
    spec = importlib.util.spec_from_file_location(
        'golden_make_weights', osp.join(GOLDEN_DIR, 'make_weights.py'))
    make_weights = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_weights)
    weights = make_weights.build_state_dict(
        make_weights.load_manifest(
            osp.join(GOLDEN_DIR, variant, 'manifest.json')))
    converted = convert_centermask2(weights, config).state_dict
    if is_centermask(kind):
        model.load_state_dict(converted, strict=True)
        return
    backbone = {
        k[len('backbone.'):]: v
        for k, v in converted.items() if k.startswith('backbone.')
    }
    model.backbone.load_state_dict(backbone, strict=True)


def golden_data(config: str) -> dict:
    """The golden coffee photograph as the test pipeline gives it (resized
    with PIL to the config's test size), packed for ``test_step``."""
    import numpy as np
    import torch
    from mmdet.structures import DetDataSample
    with np.load(
            osp.join(GOLDEN_DIR, golden_variant(config),
                     'coffee_infer.npz')) as data:
        image = torch.from_numpy(data['input_image'])
        ori_h, ori_w = (int(v) for v in data['orig_hw'])
        scale_x, scale_y = (float(v) for v in data['scale_xy'])
    sample = DetDataSample(
        metainfo=dict(
            img_id=0,
            img_path='coffee.png',
            ori_shape=(ori_h, ori_w),
            img_shape=tuple(image.shape[1:]),
            scale_factor=(scale_x, scale_y)))
    return dict(inputs=[image], data_samples=[sample])


def current_rss_mb() -> float:
    """Resident set size of this process in MiB."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    raise RuntimeError('no VmRSS in /proc/self/status')


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS; False where Linux does not
    allow it."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def peak_rss_mb(was_reset: bool) -> float:
    """Peak RSS (MiB) since :func:`reset_peak_rss`, or since the start of
    the process if it could not reset."""
    if was_reset:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(config: str, kind: str, size: Optional[Tuple[int, int]],
            args: argparse.Namespace) -> Dict[str, object]:
    """Build one model and time it; runs in its own process.

    Returns:
        dict: ``size``, ``params_m``, ``masks`` (pasted per image), wall
        ``latency_ms`` (median, min, max), ``cpu_ms`` (median; CPU only),
        ``mem_mb`` (inference peak minus memory before the runs),
        ``peak_mb`` (whole process / all CUDA allocations) and
        ``rss_method`` (how the CPU peak was read).
    """
    import logging

    import torch
    from mmdet.registry import MODELS as REGISTRY
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.logging import MMLogger

    import mmcentermask  # noqa: F401  (registration)
    from mmcentermask.utils.benchmark import (anchor_sized_boxes,
                                              count_aten_ops,
                                              count_cuda_syncs, heads_pass,
                                              make_data, mask_rcnn_model_cfg,
                                              set_post_processing)
    register_all_modules()
    if args.threads:
        torch.set_num_threads(args.threads)
    MMLogger.get_current_instance().setLevel(logging.WARNING)
    cuda = args.device == 'cuda'

    cfg = Config.fromfile(config)
    size = size or test_size(cfg)
    if is_centermask(kind):
        model_cfg = cfg.model
        model_cfg.channels_last = kind == CHANNELS_LAST
    else:
        model_cfg = mask_rcnn_model_cfg(cfg)
    if not args.config_post_processing:
        set_post_processing(model_cfg, args.score_thr, args.max_dets)
    if is_centermask(kind):
        model_cfg.test_cfg.fcos.nms_mode = args.nms_mode
    torch.manual_seed(0)
    model = REGISTRY.build(model_cfg)
    model.init_weights()
    if args.golden_weights:
        load_golden_weights(model, config, kind)
        size = tuple(golden_data(config)['inputs'][0].shape[1:])
    elif is_centermask(kind):
        anchor_sized_boxes(model)
    new_data = (lambda: golden_data(config)) if args.golden_weights \
        else (lambda: make_data(size))
    model.to(args.device)
    model.eval()
    if args.fuse_conv_bn:
        from mmcv.cnn import fuse_conv_bn
        fuse_conv_bn(model.backbone)
    params = sum(p.numel() for p in model.parameters())

    if cuda:
        torch.cuda.synchronize()
        mem_before = torch.cuda.memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
    else:
        mem_before = current_rss_mb()
        was_reset = reset_peak_rss()
    wall, cpu, masks = [], [], []
    with torch.no_grad():
        for i in range(args.warmup + args.repeat):
            data = new_data()
            if cuda:
                torch.cuda.synchronize()
            start, start_cpu = time.perf_counter(), time.process_time()
            results = model.test_step(data)
            if cuda:
                torch.cuda.synchronize()
            end, end_cpu = time.perf_counter(), time.process_time()
            if i >= args.warmup:
                wall.append(1000 * (end - start))
                cpu.append(1000 * (end_cpu - start_cpu))
                masks.append(len(results[0].pred_instances.masks))
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = peak_rss_mb(was_reset)
    heads = heads_pass(model, new_data())
    heads()
    ops = count_aten_ops(heads)[0]
    syncs = count_cuda_syncs(heads) if cuda else None
    return dict(
        aten_ops=ops,
        syncs=syncs,
        size=size,
        params_m=params / 1e6,
        masks=statistics.median(masks),
        latency_ms=(statistics.median(wall), min(wall), max(wall)),
        cpu_ms=None if cuda else statistics.median(cpu),
        mem_mb=peak - mem_before,
        peak_mb=peak,
        rss_method=None if cuda else
        ('VmHWM reset' if was_reset else 'ru_maxrss'))


def run(models: List[str], args: argparse.Namespace) -> List[dict]:
    """Measure every model and its Mask R-CNN, each in a fresh process."""
    rows = []
    for model in models:
        kinds = KINDS + ((CHANNELS_LAST, ) if args.channels_last else ())
        for kind in kinds:
            with ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=get_context('spawn'),
                    max_tasks_per_child=1) as pool:
                result = pool.submit(measure, config_path(model), kind,
                                     args.size, args).result()
            result.update(model=model, kind=kind)
            rows.append(result)
            print(
                f'  {kind:>10s} {model}: {result["latency_ms"][0]:.0f} ms, '
                f'{result["mem_mb"]:.0f} MiB',
                flush=True)
    return rows


def table(rows: List[dict], device: str) -> str:
    """Markdown table; ratios are CenterMask / Mask R-CNN of each pair."""
    mem = 'inference peak RSS (MiB)' if device == 'cpu' \
        else 'inference peak CUDA memory (MiB)'
    head = [
        'model', 'detector', 'input (HxW)', 'params (M)', 'masks',
        'latency median (min-max) (ms)', 'x Mask R-CNN',
        'ATen ops after the backbone'
    ] + (['host syncs after the backbone'] if device == 'cuda' else [])
    if device == 'cpu':
        head += ['CPU time (ms)', 'x Mask R-CNN']
    head += [mem, 'x Mask R-CNN', 'process peak (MiB)']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    base = {row['model']: row for row in rows if row['kind'] == 'Mask R-CNN'}
    for row in rows:
        ref = base[row['model']]
        median, low, high = row['latency_ms']
        cells = [
            row['model'], row['kind'], '{}x{}'.format(*row['size']),
            f'{row["params_m"]:.1f}', f'{row["masks"]:g}',
            f'{median:.0f} ({low:.0f}-{high:.0f})',
            f'{median / ref["latency_ms"][0]:.2f}', f'{row["aten_ops"]}'
        ] + ([f'{row["syncs"]}'] if device == 'cuda' else [])
        if device == 'cpu':
            cells += [
                f'{row["cpu_ms"]:.0f}', f'{row["cpu_ms"] / ref["cpu_ms"]:.2f}'
            ]
        cells += [
            f'{row["mem_mb"]:.0f}', f'{row["mem_mb"] / ref["mem_mb"]:.2f}',
            f'{row["peak_mb"]:.0f}'
        ]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def machine(args: argparse.Namespace) -> str:
    """One line on the machine and the software."""
    import mmdet
    import torch
    if args.device == 'cuda':
        hardware = torch.cuda.get_device_name()
    else:
        cpu = platform.processor() or 'unknown CPU'
        with open('/proc/cpuinfo') as f:
            names = [
                line.split(':', 1)[1].strip() for line in f
                if line.startswith('model name')
            ]
        with open('/proc/meminfo') as f:
            total_kb = int(f.readline().split()[1])
        hardware = (f'{names[0] if names else cpu}, {os.cpu_count()} logical '
                    f'CPUs, {total_kb / 2**20:.0f} GiB RAM, '
                    f'{args.threads or torch.get_num_threads()} torch '
                    'threads')
    return (f'{hardware}; torch {torch.__version__}, mmdet '
            f'{mmdet.__version__}; repeat {args.repeat}, warmup '
            f'{args.warmup}')


def load_average() -> str:
    return ', '.join(f'{v:.1f}' for v in os.getloadavg())


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument(
        '--models',
        nargs='+',
        default=list(MODELS),
        help=f'names of {list(MODELS)} or CenterMask config paths')
    parser.add_argument(
        '--size',
        type=parse_size,
        help='input HxW, e.g. 800x1333; default: each config\'s test size '
        '(800x1333, Lite 600x1000)')
    parser.add_argument(
        '--repeat', type=int, default=10, help='timed runs (median)')
    parser.add_argument(
        '--warmup', type=int, default=2, help='untimed runs first')
    parser.add_argument(
        '--threads',
        type=int,
        help='torch intra-op threads (default: torch\'s default)')
    parser.add_argument(
        '--device',
        choices=['cpu', 'cuda'],
        default='cpu',
        help='run on the CPU or the current CUDA device')
    parser.add_argument(
        '--score-thr',
        type=float,
        default=0.,
        help='score threshold of both detectors')
    parser.add_argument(
        '--max-dets',
        type=int,
        default=50,
        help='detections (= pasted masks) per image of both detectors')
    parser.add_argument(
        '--golden-weights',
        action='store_true',
        help='realistic candidates: the converted golden centermask2 weights '
        '(CenterMask; the backbone of Mask R-CNN) on the golden coffee '
        'image resized to the config\'s test size, with the config\'s '
        'post-processing (Lite V2-19-slim-dw and V2-39 configs only)')
    parser.add_argument(
        '--fuse-conv-bn',
        action='store_true',
        help='fold the backbone BNs into their convs (both detectors; what '
        'FuseConvBNHook does before tools/test.py)')
    parser.add_argument(
        '--nms-mode',
        choices=['auto', 'exact', 'batched'],
        default='auto',
        help='CenterMask FCOS NMS mode (test_cfg.fcos.nms_mode)')
    parser.add_argument(
        '--channels-last',
        action='store_true',
        help='also time each CenterMask with channels_last=True (NHWC)')
    parser.add_argument(
        '--config-post-processing',
        action='store_true',
        help='keep each config\'s thresholds (ignores --score-thr and '
        '--max-dets; the number of masks then depends on the weights)')
    args = parser.parse_args()
    if args.golden_weights:
        args.config_post_processing = True
    if args.repeat < 1 or args.warmup < 0:
        parser.error('--repeat must be >= 1 and --warmup >= 0')
    for model in args.models:
        if not osp.isfile(config_path(model)):
            parser.error(f'{model} is neither a name of {list(MODELS)} nor '
                         'a config file')
    return args


def main() -> None:
    args = parse_args()
    if args.device == 'cuda':
        import torch
        if not torch.cuda.is_available():
            sys.exit('--device cuda: CUDA is not available')
    print(
        f'{machine(args)}; load average before: {load_average()}', flush=True)
    rows = run(args.models, args)
    print(f'load average after: {load_average()}')
    post = 'config thresholds' if args.config_post_processing else \
        f'score_thr {args.score_thr}, max_per_img {args.max_dets}'
    print(f'post-processing: {post}; CenterMask nms_mode {args.nms_mode}')
    if args.device == 'cpu':
        methods = sorted({row['rss_method'] for row in rows})
        print(f'peak RSS from: {", ".join(methods)}')
    print(table(rows, args.device))


if __name__ == '__main__':
    main()
