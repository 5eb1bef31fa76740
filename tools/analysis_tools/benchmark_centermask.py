"""Inference latency per stage of CenterMask(-Lite) against MMDetection's
Mask R-CNN with the same backbone, input, candidates and final masks.

Method:

* models: each CenterMask config of ``--models`` (channels-last on the CPU
  as the model is built; ``--channels-last`` changes it) and a Mask R-CNN
  built from ``mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py`` with the
  backbone swapped for the CenterMask config's (same arch, norm and data
  preprocessor) and ``out_indices`` extended by the stride-4 stage, so its
  FPN gets C2-C5. The rest of Mask R-CNN (256-channel FPN, RPN with 1000
  proposals, 2-fc box head, 4-conv mask head, 80 classes) is MMDetection's.
* scenarios (``--scenarios``), each printed with its rows:

  - ``realistic``: the converted golden centermask2 weights (the whole
    CenterMask; for Mask R-CNN its backbone, the rest random) on the golden
    coffee photograph resized to the config's test size, with CenterMask's
    config post-processing (score threshold 0.05, 50 detections). Lite
    V2-19-slim-dw and V2-39 only (the golden sets).
  - ``worst-case``: random weights on one random image of ``--size``,
    CenterMask's score threshold 0 (every location-class pair is a
    candidate; ``nms_pre`` of them per level) and ``--max-dets``
    detections; the FCOS regression bias makes every location predict a
    box of 8 x stride, the size of Mask R-CNN's anchors.

* controlled: the same number of final masks (Mask R-CNN's
  ``max_per_img`` is CenterMask's) and the same candidates reaching the
  class-aware NMS before the final detections. CenterMask runs first; its
  FCOS NMS receives K candidates of a set of classes. Mask R-CNN's box head
  is then made to pass exactly K (proposal, class) pairs of the same
  classes to its NMS (``match_box_head_candidates`` in
  :mod:`mmcentermask.utils.benchmark`: the classifier rows of those classes
  share one weight row, the other classes are off, and the score threshold
  is calibrated on the image). Mask R-CNN has no trained heads here: its
  proposals and boxes come from random heads, but per stage it computes
  what a trained one computes for that many proposals and candidates. Its
  RPN NMS (per FPN level, up to 1000 candidates per level) is its own and
  printed. Every count is measured on an untimed pass and printed.
* timed: ``model.test_step`` split into stages (data preprocessing,
  backbone + neck, dense head, box post-processing, mask branch, pasting;
  ``inference_stages``, which gives the same results as ``test_step``,
  tested), one image, batch 1, ``eval()``, no gradients. CUDA events between
  the stages on a GPU, ``time.perf_counter`` on the CPU; median and min over
  ``--repeat`` runs after ``--warmup`` (defaults: 20 after 5 on CUDA, 3
  after 1 on the CPU); on the CPU also the process CPU time of a run.
* counted: ATen operators of one post-backbone pass (dense head to
  pasting; features computed once), with ``torch.profiler``; on CUDA also
  its host-device synchronisations (``torch.cuda.set_sync_debug_mode``).
  ``--nms-mode`` picks CenterMask's FCOS NMS (``auto``: centermask2's rule,
  ``exact``: class by class, ``batched``: one offset call).
* peak memory: every model runs in a fresh process. CPU: the peak resident
  set size during the runs (``VmHWM`` of ``/proc/self/status``, reset through
  ``/proc/self/clear_refs`` after the model is built; ``ru_maxrss`` of
  ``getrusage`` where that is unavailable, which then includes the build)
  minus the RSS just before the first run. CUDA:
  ``torch.cuda.max_memory_allocated`` during the runs minus the memory
  allocated before them.
* printed: the machine (CPU model, logical CPUs, RAM, GPU, torch, mmcv,
  mmdet, torch threads) and the settings, then one table: per model and
  scenario, each quantity for CenterMask and Mask R-CNN and their ratio.

Example::

    python tools/analysis_tools/benchmark_centermask.py --threads 2 \
        --models centermask-lite_v2-19-slim-dw --scenarios worst-case \
        --size 256x320 --repeat 2 --warmup 1
"""
import argparse
import os
import os.path as osp
import platform
import resource
import statistics
import subprocess
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
SCENARIOS = ('realistic', 'worst-case')
#: ``--channels-last`` -> ``CenterMask(channels_last=...)``
CHANNELS_LAST = {'cpu': 'cpu', 'true': True, 'false': False}


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


def golden_variant(config: str) -> str:
    """The golden variant of a config, or SystemExit naming the configs
    that have golden weights."""
    variant = GOLDEN_VARIANTS.get(osp.basename(config))
    if variant is None:
        sys.exit(f'realistic scenario: no golden weights for {config}; '
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
    if kind == 'CenterMask':
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


def measure(config: str, kind: str, scenario: str, target: Optional[dict],
            args: argparse.Namespace) -> Dict[str, object]:
    """Build one model of one scenario and time it; runs in its own
    process.

    Args:
        config (str): CenterMask config path.
        kind (str): One of :data:`KINDS`.
        scenario (str): One of :data:`SCENARIOS`.
        target (dict, optional): Mask R-CNN only: what CenterMask's FCOS
            NMS received (``candidates``, ``classes``) and its
            ``max_per_img``.
        args (argparse.Namespace): The command line.

    Returns:
        dict: ``size`` (h, w), ``params_m``, ``score_thr``,
        ``max_per_img``, ``nms`` (the :class:`NMSInput` of every NMS call),
        ``masks`` (pasted), ``stage_ms`` (per stage, a list over the runs),
        ``cpu_ms`` (process CPU time per run; CPU only), ``aten_ops``,
        ``syncs`` (CUDA only), ``mem_mb`` (inference peak minus memory
        before the runs), ``peak_mb`` (whole process / all CUDA
        allocations) and ``rss_method`` (how the CPU peak was read).
    """
    import logging

    import torch
    from mmdet.registry import MODELS as REGISTRY
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.logging import MMLogger

    import mmcentermask  # noqa: F401  (registration)
    from mmcentermask.utils.benchmark import (
        anchor_sized_boxes, count_aten_ops, count_cuda_syncs, heads_pass,
        inference_stages, make_data, mask_rcnn_model_cfg,
        match_box_head_candidates, probe_inference, set_post_processing,
        time_stages)
    register_all_modules()
    if args.threads:
        torch.set_num_threads(args.threads)
    MMLogger.get_current_instance().setLevel(logging.WARNING)
    cuda = args.device == 'cuda'
    realistic = scenario == 'realistic'

    cfg = Config.fromfile(config)
    if kind == 'CenterMask':
        model_cfg = cfg.model
        model_cfg.channels_last = args.channels_last
        model_cfg.test_cfg.fcos.nms_mode = args.nms_mode
        if not realistic:
            set_post_processing(model_cfg, 0., args.max_dets)
    else:
        model_cfg = mask_rcnn_model_cfg(cfg)
        set_post_processing(model_cfg, 0., target['max_per_img'])
    torch.manual_seed(0)
    model = REGISTRY.build(model_cfg)
    model.init_weights()
    if realistic:
        load_golden_weights(model, config, kind)
    elif kind == 'CenterMask':
        anchor_sized_boxes(model)
    size = args.size or test_size(cfg)
    new_data = (lambda: golden_data(config)) if realistic \
        else (lambda: make_data(size))
    model.to(args.device)
    model.eval()
    if args.fuse_conv_bn:
        from mmcv.cnn import fuse_conv_bn
        fuse_conv_bn(model.backbone)
    if args.compile:  # CompileNetworkHook's parts, both detectors
        model.backbone.compile()
        model.neck.compile()
    if kind == 'Mask R-CNN':
        match_box_head_candidates(model, new_data(), target['classes'],
                                  target['candidates'])
    post = model.test_cfg.fcos if kind == 'CenterMask' \
        else model.test_cfg.rcnn
    nms, results = probe_inference(model, new_data())

    if cuda:
        torch.cuda.synchronize()
        mem_before = torch.cuda.memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
    else:
        mem_before = current_rss_mb()
        was_reset = reset_peak_rss()
    stages = inference_stages(model)
    stage_ms, cpu_ms = [[] for _ in stages], []
    for i in range(args.warmup + args.repeat):
        data = new_data()
        start_cpu = time.process_time()
        times, _ = time_stages(stages, data, cuda)
        end_cpu = time.process_time()
        if i >= args.warmup:
            for column, value in zip(stage_ms, times):
                column.append(value)
            cpu_ms.append(1000 * (end_cpu - start_cpu))
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = peak_rss_mb(was_reset)
    heads = heads_pass(model, new_data())
    heads()
    return dict(
        size=tuple(results[0].img_shape),
        params_m=sum(p.numel() for p in model.parameters()) / 1e6,
        score_thr=post.score_thr,
        max_per_img=post.max_per_img,
        nms=[call._asdict() for call in nms],
        masks=len(results[0].pred_instances.masks),
        stage_ms=stage_ms,
        cpu_ms=None if cuda else cpu_ms,
        aten_ops=count_aten_ops(heads)[0],
        syncs=count_cuda_syncs(heads) if cuda else None,
        mem_mb=peak - mem_before,
        peak_mb=peak,
        rss_method=None if cuda else
        ('VmHWM reset' if was_reset else 'ru_maxrss'))


def in_fresh_process(*task) -> dict:
    """``measure(*task)`` in a new (spawned) process."""
    with ProcessPoolExecutor(
            max_workers=1, mp_context=get_context('spawn'),
            max_tasks_per_child=1) as pool:
        return pool.submit(measure, *task).result()


def class_aware_input(result: dict, kind: str) -> dict:
    """The class-aware NMS input of a result: FCOS (CenterMask) or the box
    head's (Mask R-CNN)."""
    nms = 'FCOS' if kind == 'CenterMask' else 'box head'
    calls = [call for call in result['nms'] if call['nms'] == nms]
    if len(calls) != 1:
        raise RuntimeError(f'{kind}: {len(calls)} {nms} NMS calls, '
                           'expected one')
    return calls[0]


def run(args: argparse.Namespace) -> List[dict]:
    """Measure every model and scenario: CenterMask, then Mask R-CNN
    matched to it, each in a fresh process.

    Returns:
        list[dict]: Per model and scenario, ``model``, ``scenario``,
        ``CenterMask`` and ``Mask R-CNN`` (see :func:`measure`).
    """
    pairs = []
    for model in args.models:
        config = config_path(model)
        for scenario in args.scenarios:
            if scenario == 'realistic' and \
                    osp.basename(config) not in GOLDEN_VARIANTS:
                print(
                    f'  {model}: no golden weights, realistic scenario '
                    'skipped',
                    flush=True)
                continue
            centermask = in_fresh_process(config, 'CenterMask', scenario, None,
                                          args)
            fcos = class_aware_input(centermask, 'CenterMask')
            target = dict(
                candidates=fcos['boxes'],
                classes=fcos['groups'],
                max_per_img=centermask['max_per_img'])
            mask_rcnn = in_fresh_process(config, 'Mask R-CNN', scenario,
                                         target, args)
            pairs.append({
                'model': model,
                'scenario': scenario,
                'CenterMask': centermask,
                'Mask R-CNN': mask_rcnn
            })
            print(f'  {model}, {scenario}: done', flush=True)
    return pairs


def table(pairs: List[dict], device: str) -> str:
    """One Markdown table: per model and scenario, each quantity for
    CenterMask and Mask R-CNN and the ratio CenterMask / Mask R-CNN (of the
    medians for times)."""
    lines = [
        '| model | scenario | quantity | CenterMask | Mask R-CNN | '
        'CenterMask / Mask R-CNN |', '|---|---|---|---|---|---|'
    ]
    for pair in pairs:
        rows = quantities(pair['CenterMask'], pair['Mask R-CNN'], device)
        for i, (quantity, cells) in enumerate(rows):
            model, scenario = (pair['model'], pair['scenario']) if i == 0 \
                else ('', '')
            lines.append(f'| {model} | {scenario} | {quantity} | ' +
                         ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def quantities(centermask: dict, mask_rcnn: dict,
               device: str) -> List[Tuple[str, List[str]]]:
    """The rows of one model and scenario: (quantity, [CenterMask, Mask
    R-CNN, ratio])."""
    from mmcentermask.utils.benchmark import STAGES

    def ratio(a: float, b: float) -> str:
        return f'{a / b:.2f}' if b else '-'

    def counted(name: str, a: float, b: float) -> Tuple[str, List[str]]:
        return name, [f'{a:g}', f'{b:g}', ratio(a, b)]

    def timed(name: str, a: List[float],
              b: List[float]) -> Tuple[str, List[str]]:
        cells = [f'{statistics.median(v):.1f} ({min(v):.1f})' for v in (a, b)]
        return name, cells + [
            ratio(statistics.median(a), statistics.median(b))
        ]

    fcos = class_aware_input(centermask, 'CenterMask')
    box_head = class_aware_input(mask_rcnn, 'Mask R-CNN')
    rpn = [call for call in mask_rcnn['nms'] if call['nms'] == 'RPN']
    rows = [
        ('input (H x W)',
         ['{}x{}'.format(*r['size']) for r in (centermask, mask_rcnn)] + ['']),
        ('score threshold',
         [f'{r["score_thr"]:.4g}' for r in (centermask, mask_rcnn)] + ['']),
        counted('candidates into the class-aware NMS', fcos['boxes'],
                box_head['boxes']),
        counted('classes among them', len(fcos['groups']),
                len(box_head['groups'])),
        ('other NMS input (boxes)', ['-'] + [
            ', '.join(f'RPN {call["boxes"]} in {len(call["groups"])} levels'
                      for call in rpn) or '-'
        ] + ['']),
        counted('final masks', centermask['masks'], mask_rcnn['masks']),
    ]
    totals = [[sum(run) for run in zip(*r['stage_ms'])]
              for r in (centermask, mask_rcnn)]
    rows += [
        timed(f'{stage}, median (min) ms', a, b) for stage, a, b in zip(
            STAGES, centermask['stage_ms'], mask_rcnn['stage_ms'])
    ]
    rows.append(timed('total, median (min) ms', *totals))
    if device == 'cpu':
        rows.append(
            timed('process CPU time, median (min) ms', centermask['cpu_ms'],
                  mask_rcnn['cpu_ms']))
    rows.append(
        counted('ATen ops after the backbone', centermask['aten_ops'],
                mask_rcnn['aten_ops']))
    if device == 'cuda':
        rows.append(
            counted('host syncs after the backbone', centermask['syncs'],
                    mask_rcnn['syncs']))
    memory = 'RSS' if device == 'cpu' else 'CUDA memory'
    rows.append((f'inference peak {memory} (MiB)', [
        f'{centermask["mem_mb"]:.0f}', f'{mask_rcnn["mem_mb"]:.0f}',
        ratio(centermask['mem_mb'], mask_rcnn['mem_mb'])
    ]))
    rows.append(('parameters (M)', [
        f'{centermask["params_m"]:.1f}', f'{mask_rcnn["params_m"]:.1f}',
        ratio(centermask['params_m'], mask_rcnn['params_m'])
    ]))
    return rows


def cpu_model() -> str:
    """The CPU's model name (``lscpu``, else ``/proc/cpuinfo``)."""
    try:
        out = subprocess.run(['lscpu'],
                             capture_output=True,
                             text=True,
                             check=True).stdout
        names = [
            line.split(':', 1)[1].strip() for line in out.splitlines()
            if line.startswith('Model name')
        ]
    except (OSError, subprocess.CalledProcessError):
        names = []
    if not names:
        with open('/proc/cpuinfo') as f:
            names = [
                line.split(':', 1)[1].strip() for line in f
                if line.startswith('model name')
            ]
    return names[0] if names else platform.processor() or 'unknown CPU'


def machine(args: argparse.Namespace) -> str:
    """One line on the machine, the software and the settings."""
    import mmcv
    import mmdet
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    with open('/proc/meminfo') as f:
        total_kb = int(f.readline().split()[1])
    parts = [
        f'CPU {cpu_model()}, {os.cpu_count()} logical CPUs, '
        f'{total_kb / 2**20:.0f} GiB RAM'
    ]
    if args.device == 'cuda':
        parts.append(f'GPU {torch.cuda.get_device_name()} (CUDA '
                     f'{torch.version.cuda})')
    parts += [
        f'torch {torch.__version__}, mmcv {mmcv.__version__}, mmdet '
        f'{mmdet.__version__}', f'{torch.get_num_threads()} torch threads',
        f'device {args.device}',
        f'{args.repeat} timed runs after {args.warmup} warm-up',
        f'CenterMask channels_last={args.channels_last!r}, '
        f'nms_mode={args.nms_mode!r}',
        f'backbone BN folded: {args.fuse_conv_bn}',
        f'backbone + neck compiled: {args.compile}'
    ]
    return '; '.join(parts)


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
        '--scenarios',
        nargs='+',
        choices=SCENARIOS,
        default=list(SCENARIOS),
        help='realistic: converted golden weights and image, config '
        'post-processing (configs with golden weights only); worst-case: '
        'random weights and image, CenterMask score threshold 0')
    parser.add_argument(
        '--repeat',
        type=int,
        help='timed runs (median, min); default 20 on CUDA, 3 on the CPU')
    parser.add_argument(
        '--warmup',
        type=int,
        help='untimed runs first; default 5 on CUDA, 1 on the CPU')
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
        '--max-dets',
        type=int,
        default=50,
        help='worst case: detections (= pasted masks) per image of both '
        'detectors')
    parser.add_argument(
        '--fuse-conv-bn',
        action='store_true',
        help='fold the backbone BNs into their convs (both detectors; what '
        'FuseConvBNHook does before tools/test.py)')
    parser.add_argument(
        '--compile',
        action='store_true',
        help='torch.compile the backbone and neck of both detectors (what '
        'CompileNetworkHook does); compiled during the warm-up runs')
    parser.add_argument(
        '--nms-mode',
        choices=['auto', 'exact', 'batched'],
        default='auto',
        help='CenterMask FCOS NMS mode (test_cfg.fcos.nms_mode)')
    parser.add_argument(
        '--channels-last',
        choices=list(CHANNELS_LAST),
        nargs='?',
        const='true',
        default='cpu',
        help='CenterMask channels_last: cpu (default, as built: NHWC on the '
        'CPU, NCHW on a GPU), true (also alone: --channels-last) or false; '
        'Mask R-CNN stays NCHW')
    args = parser.parse_args()
    cuda = args.device == 'cuda'
    if args.repeat is None:
        args.repeat = 20 if cuda else 3
    if args.warmup is None:
        args.warmup = 5 if cuda else 1
    args.channels_last = CHANNELS_LAST[args.channels_last]
    if args.repeat < 1 or args.warmup < 0:
        parser.error('--repeat must be >= 1 and --warmup >= 0')
    if args.compile and args.warmup < 1:
        parser.error('--compile needs --warmup >= 1 (the first run '
                     'compiles)')
    for model in args.models:
        if not osp.isfile(config_path(model)):
            parser.error(f'{model} is neither a name of {list(MODELS)} nor '
                         'a config file')
    return args


#: One line per scenario, printed above the table.
SCENARIO_LEGEND = {
    'realistic':
    'converted golden centermask2 weights (Mask R-CNN: the backbone; '
    'random heads) on the golden coffee image, CenterMask config '
    'post-processing',
    'worst-case':
    'random weights on a random image, CenterMask score threshold 0',
}


def main() -> None:
    args = parse_args()
    if args.device == 'cuda':
        import torch
        if not torch.cuda.is_available():
            sys.exit('--device cuda: CUDA is not available')
    print(machine(args), flush=True)
    print(f'load average before: {load_average()}', flush=True)
    pairs = run(args)
    print(f'load average after: {load_average()}')
    for scenario in args.scenarios:
        print(f'{scenario}: {SCENARIO_LEGEND[scenario]}')
    print('controlled: Mask R-CNN max_per_img = CenterMask\'s; its box-head '
          'classifier and score threshold set so that its class-aware NMS '
          'receives as many candidates of the same classes as CenterMask\'s '
          'FCOS NMS')
    if args.device == 'cpu':
        methods = sorted(
            {pair[kind]['rss_method']
             for pair in pairs
             for kind in KINDS})
        print(f'peak RSS from: {", ".join(methods)}')
    print(table(pairs, args.device))


if __name__ == '__main__':
    main()
