"""Building blocks of the CenterMask vs Mask R-CNN comparisons
(``tools/analysis_tools/benchmark_centermask.py`` and the op-count test):
the Mask R-CNN with a CenterMask config's backbone, controlled
post-processing and candidates, a random input, inference split into timed
stages, and ATen-op, host-sync and NMS-input counting; and the runner of a
benchmark inside another checkout of this package (``compare_commits.py``,
``benchmark_train_step.py``).
"""
import contextlib
import copy
import functools
import importlib
import json
import os
import os.path as osp
import subprocess
import sys
import time
import warnings
from typing import (Callable, Dict, Iterator, List, NamedTuple, Optional,
                    Sequence, Tuple)

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import bbox2roi
from mmengine.config import Config, ConfigDict

MASK_RCNN_BASE = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
PANOPTIC_FPN_BASE = 'mmdet::panoptic_fpn/panoptic-fpn_r50_fpn_1x_coco.py'
#: FCOS distances (stride units) of a random-weight CenterMask: boxes of
#: 8 x stride, the size of Mask R-CNN's anchors (``scales=[8]``).
ANCHOR_HALF_SIDE = 4.
#: Stages of one timed inference, in order (see :func:`inference_stages`).
STAGES = ('data preprocessing', 'backbone + neck', 'dense head',
          'box post-processing', 'mask branch', 'pasting')
#: NMS calls recorded by :func:`recorded_nms_inputs`: name -> (module,
#: attribute through which the detector calls it).
NMS_FUNCTIONS = {
    'FCOS': ('mmcentermask.models.dense_heads.centermask_fcos_head',
             'class_aware_nms'),
    'RPN': ('mmdet.models.dense_heads.rpn_head', 'batched_nms'),
    'box head': ('mmdet.models.layers.bbox_nms', 'batched_nms'),
}
#: Logit steps between the matched classes of :func:`match_box_head_candidates`
#: (every proposal ranks them in the same order, no exact ties).
CLASS_LOGIT_STEP = 1e-4
#: Spread (standard deviation) of the matched classes' logits over the
#: proposals in :func:`match_box_head_candidates`: much larger than the
#: class steps, so the best proposals carry every class.
PROPOSAL_LOGIT_STD = 1.
#: Logit of the classes :func:`match_box_head_candidates` switches off.
OFF_CLASS_LOGIT = -30.

Stage = Callable[[dict], None]


def backbone_channels(backbone_cfg: dict) -> List[int]:
    """Output channels of a backbone, checked to be strides 4, 8, 16, 32.

    Raises:
        ValueError: if the outputs are not the strides 4-32.
    """
    backbone = MODELS.build(copy.deepcopy(backbone_cfg))
    backbone.eval()
    with torch.no_grad():
        outs = backbone(torch.zeros(1, 3, 64, 64))
    sizes = [out.shape[-1] for out in outs]
    if sizes != [16, 8, 4, 2]:
        raise ValueError(f'{backbone_cfg["type"]} with out_indices '
                         f'{backbone_cfg["out_indices"]} gives maps of '
                         f'{sizes} px on a 64 px input, not strides 4-32')
    return [out.shape[1] for out in outs]


def mask_rcnn_model_cfg(centermask_cfg: Config,
                        base: str = MASK_RCNN_BASE) -> ConfigDict:
    """MMDetection's Mask R-CNN (the model of the ``base`` config) with the
    CenterMask config's backbone (its ``out_indices`` extended by the
    stride-4 stage where it has C3-C5 only, so the FPN gets C2-C5), data
    preprocessor and number of classes. The rest (256-channel FPN, RPN,
    2-fc box head, 4-conv mask head) is MMDetection's."""
    from mmengine.hub import get_config
    cfg = get_config(base)
    backbone = copy.deepcopy(centermask_cfg.model.backbone)
    out_indices = tuple(backbone['out_indices'])
    if len(out_indices) == 3:
        backbone['out_indices'] = (min(out_indices) - 1, ) + out_indices
    cfg.model.backbone = backbone
    cfg.model.neck.in_channels = backbone_channels(backbone)
    cfg.model.data_preprocessor = copy.deepcopy(
        centermask_cfg.model.data_preprocessor)
    num_classes = centermask_cfg.model.num_classes
    cfg.model.roi_head.bbox_head.num_classes = num_classes
    cfg.model.roi_head.mask_head.num_classes = num_classes
    return cfg.model


def mask_rcnn_recipe_cfg(centermask_cfg: Config,
                         base: str = MASK_RCNN_BASE) -> Config:
    """A CenterMask training config (data, pipeline, schedule, optimizer,
    hooks, seed) with MMDetection's Mask R-CNN (the model of ``base``) as the
    model: the same backbone (with its stride-4 stage), the FPN and every
    head as wide as the CenterMask FPN (``neck.out_channels``), as many
    positive RoIs per image (the second stage samples
    ``train_cfg.rcnn.sampler``'s ``num`` RoIs with ``pos_fraction``, as
    CenterMask's mask branch does); RPN, 2-fc box head and 4-conv mask head
    otherwise MMDetection's. The test time augmentation of the CenterMask
    config is dropped."""
    cfg = copy.deepcopy(centermask_cfg)
    model = mask_rcnn_model_cfg(centermask_cfg, base)
    width = centermask_cfg.model.neck.out_channels
    model.neck.out_channels = width
    model.rpn_head.update(in_channels=width, feat_channels=width)
    model.roi_head.bbox_roi_extractor.out_channels = width
    model.roi_head.mask_roi_extractor.out_channels = width
    model.roi_head.bbox_head.in_channels = width
    model.roi_head.mask_head.update(in_channels=width, conv_out_channels=width)
    sampler = centermask_cfg.model.train_cfg.rcnn.sampler
    model.train_cfg.rcnn.sampler.update(
        num=sampler.num, pos_fraction=sampler.pos_fraction)
    cfg.model = model
    for key in ('tta_model', 'tta_pipeline'):
        cfg.pop(key, None)
    return cfg


def panoptic_fpn_recipe_cfg(panoptic_cfg: Config) -> Config:
    """A Panoptic-CenterMask training config (data, pipeline, schedule,
    optimizer, seed) with MMDetection's Panoptic FPN as the model: its
    Mask R-CNN as :func:`mask_rcnn_recipe_cfg` makes it; its semantic head
    (``PanopticFPNHead``, P2-P5) as wide as ours (``inner_channels``, GN),
    its ``HeuristicFusionHead`` with our stuff area limit (the one figure
    that depends on the image size); every threshold and loss weight
    otherwise MMDetection's (``test_cfg.rcnn.score_thr`` 0.6).
    ``PanopticNumClassCheckHook`` (which reads CenterMask's heads) is
    dropped, as MMDetection's config drops its ``NumClassCheckHook``."""
    cfg = mask_rcnn_recipe_cfg(panoptic_cfg, PANOPTIC_FPN_BASE)
    things = panoptic_cfg.model.num_classes
    stuff = panoptic_cfg.model.num_stuff_classes
    semantic = panoptic_cfg.model.semantic_head
    cfg.model.semantic_head.update(
        num_things_classes=things,
        num_stuff_classes=stuff,
        in_channels=panoptic_cfg.model.neck.out_channels,
        inner_channels=semantic.inner_channels,
        norm_cfg=copy.deepcopy(semantic.norm_cfg))
    cfg.model.panoptic_fusion_head.update(
        num_things_classes=things, num_stuff_classes=stuff)
    cfg.model.test_cfg.panoptic.stuff_area_limit = \
        panoptic_cfg.model.test_cfg.panoptic.stuff_area_limit
    cfg.custom_hooks = [
        hook for hook in cfg.get('custom_hooks', [])
        if hook['type'] != 'PanopticNumClassCheckHook'
    ]
    return cfg


def set_post_processing(model_cfg: ConfigDict, score_thr: float,
                        max_dets: int) -> None:
    """Score threshold and detections per image of a CenterMask
    (``test_cfg.fcos``) or Mask R-CNN (``test_cfg.rcnn``) config."""
    post = model_cfg.test_cfg.fcos if 'fcos' in model_cfg.test_cfg \
        else model_cfg.test_cfg.rcnn
    post.score_thr = score_thr
    post.max_per_img = max_dets


def anchor_sized_boxes(model: torch.nn.Module,
                       half_side: float = ANCHOR_HALF_SIDE) -> None:
    """Make every location of a random-weight FCOS head predict a box of
    side ``2 * half_side`` strides (an initialised head regresses ~0, empty
    boxes that CenterMask drops).

    Raises:
        ValueError: for a head whose distances are not in stride units.
    """
    head = model.bbox_head
    if not head.norm_on_bbox:
        raise ValueError('box sizes of FCOS heads are set with '
                         'norm_on_bbox=True only')
    torch.nn.init.constant_(head.conv_reg.bias, half_side)


def make_data(size: Tuple[int, int], seed: int = 0) -> dict:
    """A packed batch of one random uint8 image (3, H, W) whose original
    size is the input size (what ``PackDetInputs`` yields after
    ``Resize``)."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.randint(
        0, 256, (3, *size), generator=generator, dtype=torch.uint8)
    sample = DetDataSample(
        metainfo=dict(
            img_id=0,
            img_path='random.jpg',
            ori_shape=size,
            img_shape=size,
            scale_factor=(1., 1.)))
    return dict(inputs=[image], data_samples=[sample])


def inference_stages(model: torch.nn.Module) -> List[Tuple[str, Stage]]:
    """``model.test_step`` of CenterMask or of a two-stage detector (Mask
    R-CNN) split into the :data:`STAGES`, each a function of a state dict.

    Start with ``dict(data=packed_batch)``; the last stage leaves
    ``results``, what ``test_step`` returns (equal to it; tested):

    - data preprocessing: the data preprocessor (to the device, normalise,
      pad);
    - backbone + neck: ``extract_feat``;
    - dense head: the FCOS head's / RPN's forward (maps of every level);
    - box post-processing: CenterMask: FCOS candidates, class-aware NMS,
      top-k cut; Mask R-CNN: RPN proposals (candidates, NMS per level), then
      RoI pooling, the box head and its class-aware NMS;
    - mask branch: RoI pooling and mask head (CenterMask: with the MaskIoU
      head; the class channel and sigmoid of its mask logits);
    - pasting: the masks on the original image (Mask R-CNN: mmdet's
      ``FCNMaskHead.predict_by_feat``, with its class channel and sigmoid).

    Every image needs at least one detection (stock Mask R-CNN skips the
    mask head for none; these stages do not).
    """

    def preprocess(state: dict) -> None:
        batch = model.data_preprocessor(state['data'], False)
        state.update(
            inputs=batch['inputs'],
            samples=batch['data_samples'],
            metas=[sample.metainfo for sample in batch['data_samples']])

    def backbone_neck(state: dict) -> None:
        state['feats'] = model.extract_feat(state['inputs'])

    heads = _two_stage_head_stages(model) if hasattr(model, 'rpn_head') \
        else _centermask_head_stages(model)
    return list(zip(STAGES, (preprocess, backbone_neck) + heads))


def _centermask_head_stages(model: torch.nn.Module) -> Tuple[Stage, ...]:
    """Dense head, box post-processing, mask branch and pasting of
    CenterMask (``CenterMask.predict``: the FCOS head on
    ``model.fcos_feats``, the mask branch on ``model.mask_feats``)."""
    head, roi_head = model.bbox_head, model.roi_head

    def dense_head(state: dict) -> None:
        state['head_outs'] = head(model.fcos_feats(state['feats']))

    def box_post_processing(state: dict) -> None:
        state['detections'] = head.predict_by_feat(
            *state['head_outs'], batch_img_metas=state['metas'], rescale=False)

    def mask_branch(state: dict) -> None:
        state['masks'] = roi_head.mask_probabilities(
            model.mask_feats(state['feats']), state['metas'],
            state['detections'])

    def pasting(state: dict) -> None:
        results = roi_head.postprocess(
            state['detections'], *state['masks'], state['metas'], rescale=True)
        state['results'] = model.add_pred_to_datasample(
            state['samples'], results)

    return dense_head, box_post_processing, mask_branch, pasting


def _two_stage_head_stages(model: torch.nn.Module) -> Tuple[Stage, ...]:
    """Dense head, box post-processing, mask branch and pasting of a
    two-stage detector (``TwoStageDetector.predict`` with
    ``StandardRoIHead.predict``)."""
    rpn_head, roi_head = model.rpn_head, model.roi_head

    def dense_head(state: dict) -> None:
        state['head_outs'] = rpn_head(state['feats'])

    def box_post_processing(state: dict) -> None:
        proposals = rpn_head.predict_by_feat(
            *state['head_outs'], batch_img_metas=state['metas'], rescale=False)
        state['detections'] = roi_head.predict_bbox(
            state['feats'],
            state['metas'],
            proposals,
            rcnn_test_cfg=roi_head.test_cfg,
            rescale=False)

    def mask_branch(state: dict) -> None:
        detections = state['detections']
        rois = bbox2roi([dets.bboxes for dets in detections])
        mask_preds = roi_head._mask_forward(state['feats'], rois)['mask_preds']
        state['masks'] = mask_preds.split([len(dets) for dets in detections])

    def pasting(state: dict) -> None:
        results = roi_head.mask_head.predict_by_feat(
            mask_preds=state['masks'],
            results_list=state['detections'],
            batch_img_metas=state['metas'],
            rcnn_test_cfg=roi_head.test_cfg,
            rescale=True)
        state['results'] = model.add_pred_to_datasample(
            state['samples'], results)

    return dense_head, box_post_processing, mask_branch, pasting


def run_stages(stages: List[Tuple[str, Stage]], state: dict) -> dict:
    """Run ``stages`` in order on ``state`` (no gradients); returns it."""
    with torch.no_grad():
        for _, stage in stages:
            stage(state)
    return state


def time_stages(stages: List[Tuple[str, Stage]], data: dict,
                cuda: bool) -> Tuple[List[float], List[DetDataSample]]:
    """One inference of ``data`` through ``stages``, timed per stage.

    ``cuda``: CUDA events recorded between the stages on the current stream
    (after a synchronisation, read after one at the end: device time,
    including the gaps in which the device waits for the host); otherwise
    ``time.perf_counter`` between the stages.

    Returns:
        tuple[list[float], list[DetDataSample]]: Milliseconds of each
        stage, and the results.
    """
    state = dict(data=data)
    with torch.no_grad():
        if cuda:
            events = [
                torch.cuda.Event(enable_timing=True)
                for _ in range(len(stages) + 1)
            ]
            torch.cuda.synchronize()
            events[0].record()
            for (_, stage), event in zip(stages, events[1:]):
                stage(state)
                event.record()
            torch.cuda.synchronize()
            times = [a.elapsed_time(b) for a, b in zip(events, events[1:])]
        else:
            marks = [time.perf_counter()]
            for _, stage in stages:
                stage(state)
                marks.append(time.perf_counter())
            times = [1000 * (b - a) for a, b in zip(marks, marks[1:])]
    return times, state['results']


def heads_pass(model: torch.nn.Module,
               data: dict) -> Callable[[], List[DetDataSample]]:
    """The post-backbone part of one inference: preprocessing and features
    are computed once here; the returned function runs the dense head, the
    box post-processing, the mask branch and the pasting
    (:func:`inference_stages`), batch of one, original-size outputs."""
    stages = inference_stages(model)
    features = run_stages(stages[:2], dict(data=data))

    def run() -> List[DetDataSample]:
        return run_stages(stages[2:], dict(features))['results']

    return run


class NMSInput(NamedTuple):
    """What one NMS call received.

    Attributes:
        nms (str): Which NMS (a key of :data:`NMS_FUNCTIONS`).
        boxes (int): Number of boxes (candidates).
        groups (tuple[int]): The distinct labels: classes (RPN: the FPN
            levels, which it suppresses separately).
    """
    nms: str
    boxes: int
    groups: Tuple[int, ...]


@contextlib.contextmanager
def recorded_nms_inputs() -> Iterator[List[NMSInput]]:
    """Record the input of every NMS call of CenterMask's FCOS head,
    MMDetection's RPN and its box head (``multiclass_nms``) inside the
    context, in call order; the functions are restored on exit. Reading
    the labels synchronises with the device: not for timed runs."""
    calls: List[NMSInput] = []
    patched = []
    try:
        for nms, (module_name, attribute) in NMS_FUNCTIONS.items():
            module = importlib.import_module(module_name)
            function = getattr(module, attribute)
            setattr(module, attribute, _recording(function, nms, calls))
            patched.append((module, attribute, function))
        yield calls
    finally:
        for module, attribute, function in patched:
            setattr(module, attribute, function)


def _recording(function: Callable, nms: str,
               calls: List[NMSInput]) -> Callable:
    """``function(bboxes, scores, labels, ...)`` that appends its input to
    ``calls`` first."""

    @functools.wraps(function)
    def record(bboxes, scores, labels, *args, **kwargs):
        calls.append(
            NMSInput(nms, len(bboxes), tuple(labels.unique().tolist())))
        return function(bboxes, scores, labels, *args, **kwargs)

    return record


def probe_inference(model: torch.nn.Module,
                    data: dict) -> Tuple[List[NMSInput], List[DetDataSample]]:
    """One untimed inference of ``data``: the NMS inputs and the results."""
    with recorded_nms_inputs() as calls:
        results = run_stages(inference_stages(model),
                             dict(data=data))['results']
    return calls, results


def class_aware_nms_input(model: torch.nn.Module,
                          calls: List[NMSInput]) -> NMSInput:
    """The (one) class-aware NMS input of a batch of one among ``calls``:
    FCOS for CenterMask, the box head's for Mask R-CNN.

    Raises:
        ValueError: if there is not exactly one such call.
    """
    nms = 'box head' if hasattr(model, 'rpn_head') else 'FCOS'
    found = [call for call in calls if call.nms == nms]
    if len(found) != 1:
        raise ValueError(f'{len(found)} {nms} NMS calls, expected one '
                         '(batch of one image with candidates)')
    return found[0]


def match_box_head_candidates(model: torch.nn.Module, data: dict,
                              classes: Sequence[int],
                              candidates: int) -> float:
    """Make the box-head NMS of a two-stage detector (Mask R-CNN) receive
    exactly ``candidates`` (proposal, class) pairs of exactly ``classes`` on
    ``data`` (what CenterMask's FCOS NMS receives).

    The classifier rows of ``classes`` get one weight row (the first one's,
    scaled so that its logits spread by :data:`PROPOSAL_LOGIT_STD` over the
    proposals of ``data``) and biases :data:`CLASS_LOGIT_STEP` apart: the
    proposals are ranked by that row, and each ranks the classes in the same
    order, so the best proposals carry every class. The other foreground
    classes get weight 0 and logit :data:`OFF_CLASS_LOGIT` (never
    candidates); the background row is unchanged. The box head's
    ``score_thr`` becomes the (``candidates`` + 1)-th largest score among
    ``classes``: exactly ``candidates`` scores are above it.

    Args:
        model (nn.Module): A two-stage detector, on its device, eval mode.
        data (dict): The packed batch of one image it will be timed on.
        classes (Sequence[int]): Classes (0-based) of the candidates.
        candidates (int): Number of candidates.

    Returns:
        float: The score threshold set.

    Raises:
        ValueError: with fewer than ``candidates`` + 1 proposal-class pairs
            of ``classes``, proposals that the classifier cannot tell apart,
            or an exact tie at the threshold.
    """
    bbox_head = model.roi_head.bbox_head
    fc_cls = bbox_head.fc_cls
    device = fc_cls.weight.device
    kept = torch.as_tensor(list(classes), dtype=torch.long, device=device)
    off = torch.ones(bbox_head.num_classes, dtype=torch.bool, device=device)
    off[kept] = False
    off = off.nonzero()[:, 0]
    row = fc_cls.weight[kept[0]].detach().clone()
    spread = (_box_head_io(model, data)[0] @ row).std()
    if not spread > 0:
        raise ValueError('the box head gives every proposal the same '
                         'features: no ranking of the proposals')
    with torch.no_grad():
        fc_cls.weight[off] = 0.
        fc_cls.bias[off] = OFF_CLASS_LOGIT
        fc_cls.weight[kept] = row * (PROPOSAL_LOGIT_STD / spread)
        fc_cls.bias[kept] = fc_cls.bias[kept[0]] - CLASS_LOGIT_STEP * \
            torch.arange(len(kept), device=device)
    scores = F.softmax(_box_head_io(model, data)[1], dim=-1)
    scores = scores[:, kept].flatten()
    if scores.numel() <= candidates:
        raise ValueError(
            f'{scores.numel() // len(kept)} proposals x {len(kept)} classes '
            f'give at most {scores.numel()} candidates, fewer than '
            f'{candidates} + 1')
    top = scores.topk(candidates + 1).values
    if top[-2] == top[-1]:
        raise ValueError(f'scores {candidates} and {candidates + 1} tie')
    model.roi_head.test_cfg.score_thr = top[-1].item()
    return model.roi_head.test_cfg.score_thr


def _box_head_io(model: torch.nn.Module,
                 data: dict) -> Tuple[torch.Tensor, torch.Tensor]:
    """The input features (P, D) and class logits (P, K + 1) of the box
    head's classifier on the proposals of ``data``."""
    captured = []
    hook = model.roi_head.bbox_head.fc_cls.register_forward_hook(
        lambda module, inputs, output: captured.append((inputs[0], output)))
    try:
        run_stages(inference_stages(model)[:4], dict(data=data))
    finally:
        hook.remove()
    return captured[0]


def count_aten_ops(fn: Callable[[], object]) -> Tuple[int, Dict[str, int]]:
    """ATen operators that ``fn()`` dispatches (top-level calls of the
    ``aten::`` namespace, as recorded by :mod:`torch.profiler`; ops called
    from inside other ATen ops are not counted again).

    Returns:
        tuple[int, dict[str, int]]: The count and the count per op name.
    """
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    counts: Dict[str, int] = {}
    for event in prof.events():
        if event.name.startswith('aten::') and not _inside_aten(event):
            counts[event.name] = counts.get(event.name, 0) + 1
    return sum(counts.values()), counts


def _inside_aten(event) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith('aten::'):
            return True
        parent = parent.cpu_parent
    return False


def count_cuda_syncs(fn: Callable[[], object]) -> int:
    """Host-device synchronisations of ``fn()`` on CUDA, counted with
    ``torch.cuda.set_sync_debug_mode('warn')``."""
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode('warn')
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            fn()
            torch.cuda.synchronize()
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    return sum('synchroniz' in str(w.message) for w in caught)


def run_in_checkout(checkout: str,
                    python_args: List[str],
                    cwd: Optional[str] = None) -> dict:
    """Run Python with ``checkout`` first on ``PYTHONPATH`` (so that it
    imports that checkout's ``mmcentermask``) and read the JSON object of the
    last line it prints.

    Args:
        checkout (str): Root of a checkout of this package (e.g. a git
            worktree of an older commit).
        python_args (list[str]): Arguments of the interpreter, e.g.
            ``['-c', code, ...]`` or ``[script, ...]``.
        cwd (str, optional): Working directory. Defaults to ``checkout``.

    Returns:
        dict: The parsed last line of stdout.

    Raises:
        RuntimeError: The process failed (the end of its stderr is in the
            message).
    """
    checkout = osp.abspath(checkout)
    env = dict(os.environ, PYTHONPATH=checkout)
    proc = subprocess.run(
        [sys.executable] + python_args,
        cwd=cwd or checkout,
        env=env,
        capture_output=True,
        text=True)
    if proc.returncode != 0:
        raise RuntimeError(f'{checkout}: {proc.stderr[-3000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])
