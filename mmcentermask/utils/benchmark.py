"""Building blocks of the CenterMask vs Mask R-CNN comparisons
(``tools/analysis_tools/benchmark_centermask.py`` and the op-count test):
the Mask R-CNN with a CenterMask config's backbone, controlled
post-processing, a random input, and ATen-op and host-sync counting.
"""
import copy
import warnings
from typing import Callable, Dict, List, Tuple

import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.config import Config, ConfigDict

MASK_RCNN_BASE = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
#: FCOS distances (stride units) of a random-weight CenterMask: boxes of
#: 8 x stride, the size of Mask R-CNN's anchors (``scales=[8]``).
ANCHOR_HALF_SIDE = 4.


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


def mask_rcnn_model_cfg(centermask_cfg: Config) -> ConfigDict:
    """MMDetection's Mask R-CNN with the CenterMask config's backbone (its
    ``out_indices`` extended by the stride-4 stage, so the FPN gets C2-C5),
    data preprocessor and number of classes. The rest (256-channel FPN, RPN,
    2-fc box head, 4-conv mask head) is MMDetection's."""
    from mmengine.hub import get_config
    cfg = get_config(MASK_RCNN_BASE)
    backbone = copy.deepcopy(centermask_cfg.model.backbone)
    out_indices = tuple(backbone['out_indices'])
    backbone['out_indices'] = (min(out_indices) - 1, ) + out_indices
    cfg.model.backbone = backbone
    cfg.model.neck.in_channels = backbone_channels(backbone)
    cfg.model.data_preprocessor = copy.deepcopy(
        centermask_cfg.model.data_preprocessor)
    num_classes = centermask_cfg.model.num_classes
    cfg.model.roi_head.bbox_head.num_classes = num_classes
    cfg.model.roi_head.mask_head.num_classes = num_classes
    return cfg.model


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


def heads_pass(model: torch.nn.Module,
               data: dict) -> Callable[[], List[DetDataSample]]:
    """The post-backbone part of one inference: features are computed once
    here; the returned function runs the heads, the post-processing and the
    mask pasting (CenterMask: FCOS head + RoI head; a two-stage detector:
    RPN + RoI head), batch of one, original-size outputs."""
    batch = model.data_preprocessor(data, False)
    samples = batch['data_samples']
    with torch.no_grad():
        feats = model.extract_feat(batch['inputs'])

    def run() -> List[DetDataSample]:
        with torch.no_grad():
            if hasattr(model, 'rpn_head'):
                detections = model.rpn_head.predict(
                    feats, samples, rescale=False)
            else:
                detections = model.bbox_head.predict(
                    feats, samples, rescale=False)
            return model.roi_head.predict(
                feats, detections, samples, rescale=True)

    return run


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
