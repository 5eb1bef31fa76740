"""The configs of ``configs/centermask``: the recipe the README promises,
model build, FPN input channels, prediction, a training step, the metafile
and README listings and the single ``num_classes``.

The recipe is checked on the configs of the authors' schedules, named
``*_ms-3x_coco.py`` / ``*_ms-4x_coco.py``; variants that name other training
settings (``*_mb-ms-3x_coco.py``: maskrcnn-benchmark behaviour,
``*_shapes.py``: CPU quick start) change it on purpose.
"""
import copy
import glob
import os.path as osp
import re
from types import SimpleNamespace

import pytest
import torch
import yaml
from mmdet.registry import DATASETS, HOOKS
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper

from config_test_utils import (CONFIG_ROOT, REPO_ROOT,
                               assert_instance_predictions, build_model,
                               load_config, make_batch, non_finite_grads,
                               params_without_grad, predict, train_step)

CENTERMASK_DIR = osp.join(CONFIG_ROOT, 'centermask')
CONFIGS = sorted(glob.glob(osp.join(CENTERMASK_DIR, '*.py')))
RECIPE_CONFIGS = [p for p in CONFIGS if re.search(r'_ms-[34]x_coco\.py$', p)]
LITE_SLIM_DW = osp.join(
    CENTERMASK_DIR, 'centermask-lite_vovnet-v2-19-slim-dw_fpn_ms-4x_coco.py')

# Training step on a representative subset.
TRAIN_SUBSET = [
    'centermask-lite_vovnet-v2-19-slim-dw_fpn_ms-4x_coco',
    'centermask-lite_mobilenet-v2_fpn_ms-4x_coco',
    'centermask_vovnet-v2-39_fpn_ms-3x_coco',
    'centermask_vovnet-v2-39-dcn_fpn_ms-3x_coco',
    'centermask_r50-caffe_fpn_ms-3x_coco',
]
LOSSES = {
    'loss_cls', 'loss_bbox', 'loss_centerness', 'loss_mask', 'loss_mask_iou'
}

# The authors' recipe (centermask2, reference spec section 8).
FULL_RECIPE = dict(
    train_scales=[(1333, s) for s in range(640, 801, 32)],
    test_scale=(1333, 800),
    max_iters=270000,
    milestones=[210000, 250000],
    channels=256,
    num_convs=4)
LITE_RECIPE = dict(
    train_scales=[(1000, 580), (1000, 600)],
    test_scale=(1000, 600),
    max_iters=360000,
    milestones=[300000, 340000],
    channels=128,
    num_convs=2)
CAFFE_MEAN = [103.530, 116.280, 123.675]
X101_STD = [57.375, 57.120, 58.395]


def stem(path: str) -> str:
    """Config name without directory and extension."""
    return osp.splitext(osp.basename(path))[0]


def recipe(path: str) -> dict:
    """Full or Lite recipe, chosen by the config name."""
    return LITE_RECIPE if stem(path).startswith('centermask-lite_') \
        else FULL_RECIPE


def only(pipeline: list, transform: str) -> dict:
    """The single transform of a type in a pipeline."""
    found = [step for step in pipeline if step['type'] == transform]
    assert len(found) == 1, f'{len(found)} {transform} in {pipeline}'
    return found[0]


def shapes_config_path() -> str:
    """The quick-start config (3 classes, the generated shapes data)."""
    paths = [
        p for p in glob.glob(osp.join(CENTERMASK_DIR, '*_shapes.py'))
        if '_mask-p2_' not in p
    ]
    assert len(paths) == 1, paths
    return paths[0]


def mask_strides(path: str) -> list:
    """Strides the mask branch pools from: P2-P5 for the ``_mask-p2_``
    configs (ours), P3-P5 for the others (the authors')."""
    return [4, 8, 16, 32] if '_mask-p2_' in stem(path) else [8, 16, 32]


def metafile_models() -> list:
    """The ``Models`` entries of ``configs/centermask/metafile.yml``."""
    with open(osp.join(CENTERMASK_DIR, 'metafile.yml')) as f:
        return yaml.safe_load(f)['Models']


@pytest.mark.parametrize('path', RECIPE_CONFIGS, ids=stem)
def test_recipe(path):
    cfg = load_config(path)
    expected = recipe(path)

    preprocessor = cfg.model.data_preprocessor
    assert preprocessor.mean == CAFFE_MEAN
    std = X101_STD if '_x101-' in stem(path) else [1., 1., 1.]
    assert preprocessor.std == std
    assert preprocessor.bgr_to_rgb is False
    assert preprocessor.pad_size_divisor == 32

    train_pipeline = cfg.train_dataloader.dataset.pipeline
    resize = only(train_pipeline, 'RandomChoiceResize')
    assert [tuple(s) for s in resize.scales] == expected['train_scales']
    assert resize.keep_ratio is True
    assert only(train_pipeline, 'RandomFlip').prob == 0.5
    assert only(train_pipeline, 'LoadAnnotations').poly2mask is False
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        test_resize = only(loader.dataset.pipeline, 'Resize')
        assert tuple(test_resize.scale) == expected['test_scale']
        assert test_resize.keep_ratio is True

    assert cfg.optim_wrapper.optimizer == dict(
        type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4)
    assert cfg.optim_wrapper.paramwise_cfg.norm_decay_mult == 0.
    assert cfg.auto_scale_lr.base_batch_size == 16
    assert cfg.train_dataloader.batch_size == 2
    warmup, steps = cfg.param_scheduler
    assert warmup == dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000)
    assert steps.type == 'MultiStepLR' and steps.by_epoch is False
    assert steps.milestones == expected['milestones']
    assert steps.gamma == 0.1
    assert cfg.train_cfg.type == 'IterBasedTrainLoop'
    assert cfg.train_cfg.max_iters == expected['max_iters']
    assert steps.end == expected['max_iters']
    entry, = [m for m in metafile_models() if m['Name'] == stem(path)]
    assert entry['Metadata']['Training Iterations'] == expected['max_iters']

    assert cfg.model.num_classes == 80
    fcos_test = cfg.model.test_cfg.fcos
    assert (fcos_test.score_thr, fcos_test.nms_pre) == (0.05, 1000)
    assert fcos_test.nms == dict(type='nms', iou_threshold=0.6)
    assert fcos_test.max_per_img == 50
    proposals = cfg.model.train_cfg.fcos_proposal
    assert (proposals.score_thr, proposals.nms_pre) == (0.05, 1000)
    assert proposals.nms == dict(type='nms', iou_threshold=0.6)
    assert proposals.max_per_img == 100
    assert cfg.model.train_cfg.rcnn.mask_thr_binary == 0.
    assert cfg.model.test_cfg.rcnn.mask_thr_binary == 0.5
    extractor = cfg.model.roi_head.mask_roi_extractor
    assert extractor.type == 'AdaptiveLevelRoIExtractor'
    assert extractor.get('level_rule', 'ratio') == 'ratio'
    assert extractor.featmap_strides == mask_strides(path)
    # SparseRoIAlign: mmcv's RoIAlign computed as a sparse product on the CPU
    assert extractor.roi_layer == dict(
        type='SparseRoIAlign', output_size=14, sampling_ratio=0, aligned=True)
    assert cfg.model.backbone.init_cfg is None


@pytest.mark.parametrize('path', CONFIGS, ids=stem)
def test_build_structure_and_predict(path):
    cfg = load_config(path)
    assert 'NumClassCheckHook' in [h['type'] for h in cfg.custom_hooks]
    expected = recipe(path)
    channels, num_convs = expected['channels'], expected['num_convs']
    if path.endswith('_shapes.py'):
        channels = 64  # the CPU quick start narrows the Lite FPN and heads
    # Random weights: keep every candidate so max_per_img masks are pasted.
    cfg.model.test_cfg.fcos.score_thr = 0.
    model = build_model(cfg.model)
    model.eval()

    with torch.no_grad():
        feats = model.backbone(torch.zeros(1, 3, 64, 64))
    strides = mask_strides(path)
    assert [f.shape[1] for f in feats] == list(model.neck.in_channels)
    assert [f.shape[-1] for f in feats] == [64 // s for s in strides]
    assert model.num_mask_only_levels == len(strides) - 3

    num_classes = model.num_classes
    assert model.neck.out_channels == channels
    head = model.bbox_head
    assert head.num_classes == num_classes
    assert head.feat_channels == channels
    assert len(head.cls_convs) == len(head.reg_convs) == num_convs
    mask_head = model.roi_head.mask_head
    assert mask_head.num_classes == num_classes
    assert len(mask_head.convs) == num_convs
    assert mask_head.conv_out_channels == channels
    iou_head = model.roi_head.mask_iou_head
    assert iou_head.num_classes == num_classes
    assert len(iou_head.convs) == num_convs
    assert iou_head.convs[0].in_channels == channels + 1
    roi_layer_cfg = cfg.model.roi_head.mask_roi_extractor.roi_layer
    extractor = model.roi_head.mask_roi_extractor
    assert extractor.featmap_strides == strides
    for roi_layer, stride in zip(extractor.roi_layers, strides):
        assert roi_layer.output_size == (14, 14)
        assert roi_layer.sampling_ratio == roi_layer_cfg.sampling_ratio
        assert roi_layer.aligned is roi_layer_cfg.aligned
        assert roi_layer.spatial_scale == 1 / stride

    results = predict(model, make_batch(num_classes))
    assert_instance_predictions(results, num_classes,
                                cfg.model.test_cfg.fcos.max_per_img)


@pytest.mark.parametrize('name', TRAIN_SUBSET)
def test_train_step(name):
    cfg = load_config(osp.join(CENTERMASK_DIR, name + '.py'))
    model = build_model(cfg.model)
    losses = train_step(model, make_batch(model.num_classes))
    assert set(losses) == LOSSES | {'loss'}
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values()), \
        losses
    # the GT boxes are added as proposals, so there are positive RoIs
    assert losses['loss_mask'] > 0
    assert non_finite_grads(model) == []
    unused = params_without_grad(model)
    assert not unused or cfg.get('find_unused_parameters') is True, (
        f'{unused} get no gradient: distributed training (DDP) stops at the '
        'second iteration unless the config sets '
        'find_unused_parameters=True')


def test_shapes_optimizer_is_fused_and_steps_as_the_loop():
    """The quick start's AdamW runs PyTorch's fused kernel; its exact
    switch (``fused=False``, the per-tensor loop) takes the same step up to
    float rounding, parameter groups (no decay on norms and biases)
    included.

    Both optimizers step from the same gradients: two backward passes need
    not agree bitwise (oneDNN rounds a channels-last 3x3 convolution on a
    1x1 map differently the first time it builds the primitive), and Adam's
    first step, about ``lr * sign(grad)``, turns such a difference in a
    near-zero gradient into a whole ``lr``.
    """
    cfg = load_config(shapes_config_path())
    trained = build_model(cfg.model)
    train_step(trained, make_batch(trained.num_classes))
    params = {}
    for fused in (True, False):
        model = copy.deepcopy(trained)
        for param, trained_param in zip(model.parameters(),
                                        trained.parameters()):
            param.grad = trained_param.grad.clone()
        optim_cfg = copy.deepcopy(cfg.optim_wrapper)
        optim_cfg.optimizer.fused = fused
        optim_wrapper = build_optim_wrapper(model, optim_cfg)
        assert optim_wrapper.optimizer.defaults['fused'] is fused
        optim_wrapper.step()
        params[fused] = dict(model.named_parameters())
    for name, fused_param in params[True].items():
        assert not torch.equal(
            fused_param,
            dict(trained.named_parameters())[name]), f'{name} did not step'
        torch.testing.assert_close(
            fused_param, params[False][name], rtol=1e-6, atol=1e-7, msg=name)


def test_metafile_and_readme_list_every_config():
    on_disk = {osp.relpath(p, REPO_ROOT) for p in CONFIGS}
    models = metafile_models()
    in_metafile = [m['Config'] for m in models]
    assert len(in_metafile) == len(set(in_metafile)), 'duplicate entries'
    for model in models:
        assert model['Name'] == stem(model['Config'])
        assert model['In Collection'] == 'CenterMask'
    with open(osp.join(CENTERMASK_DIR, 'README.md')) as f:
        linked = set(re.findall(r'\]\(([^)\s]+\.py)\)', f.read()))
    problems = {
        'metafile entries without a config file': set(in_metafile) - on_disk,
        'configs not in metafile.yml': on_disk - set(in_metafile),
        'README links to missing files': {
            link
            for link in linked
            if not osp.isfile(osp.join(CENTERMASK_DIR, link))
        },
        'configs not linked in README.md': {osp.basename(p)
                                            for p in CONFIGS} - linked,
    }
    assert problems == {key: set() for key in problems}


def test_num_classes_propagates_to_all_heads():
    cfg = load_config(LITE_SLIM_DW)
    cfg.model.num_classes = 3
    model = build_model(cfg.model)
    assert model.num_classes == 3
    assert model.bbox_head.num_classes == 3
    assert model.bbox_head.conv_cls.out_channels == 3
    assert model.roi_head.mask_head.num_classes == 3
    assert model.roi_head.mask_head.conv_logits.out_channels == 3
    assert model.roi_head.mask_iou_head.num_classes == 3
    assert model.roi_head.mask_iou_head.fc_mask_iou.out_features == 3


@pytest.mark.parametrize('head', ['bbox_head', 'mask_head', 'mask_iou_head'])
def test_head_stating_another_num_classes_raises(head):
    cfg = load_config(LITE_SLIM_DW)
    cfg.model.num_classes = 3
    head_cfg = cfg.model[head] if head == 'bbox_head' \
        else cfg.model.roi_head[head]
    head_cfg.num_classes = 80
    with pytest.raises(
            ValueError,
            match=rf'num_classes=3\) but its {head} config says '
            r'num_classes=80'):
        build_model(cfg.model)


def num_class_check(cfg, model, dataset, mode: str) -> None:
    """Run the config's ``NumClassCheckHook`` before a train / val epoch."""
    hook_cfg, = [
        h for h in cfg.custom_hooks if h['type'] == 'NumClassCheckHook'
    ]
    loader = SimpleNamespace(dataset=dataset)
    runner = SimpleNamespace(
        model=model,
        train_dataloader=loader,
        val_dataloader=loader,
        logger=MMLogger.get_current_instance())
    getattr(HOOKS.build(hook_cfg), f'before_{mode}_epoch')(runner)


@pytest.mark.parametrize('mode', ['train', 'val'])
def test_num_class_check_hook(tiny_coco, mode):
    shapes_cfg = load_config(shapes_config_path())
    loader_cfg = shapes_cfg[f'{mode}_dataloader']
    dataset = DATASETS.build(
        dict(loader_cfg.dataset, data_root=str(tiny_coco) + '/'))
    assert len(dataset.metainfo['classes']) == 3
    # the shapes config sets num_classes to its 3 classes: the hook passes
    num_class_check(shapes_cfg, build_model(shapes_cfg.model), dataset, mode)

    # a COCO config (80 classes) trained on the shapes data: it fails
    coco_cfg = load_config(LITE_SLIM_DW)
    with pytest.raises(
            AssertionError,
            match=r'`num_classes` \(80\) in CenterMask .* length of '
            r'`classes` 3\)'):
        num_class_check(coco_cfg, build_model(coco_cfg.model), dataset, mode)


@pytest.mark.parametrize('path', [
    osp.join(CENTERMASK_DIR, 'centermask_vovnet-v2-39_fpn_ms-3x_coco.py'),
    'shapes'
], ids=['family', 'quick_start'])
def test_tta_pipeline_makes_flipped_views_at_every_scale(tiny_coco, path):
    """``tools/test.py --tta``: the views, their sizes and flip metas."""
    cfg = load_config(shapes_config_path() if path == 'shapes' else path)
    assert cfg.tta_model.type == 'CenterMaskTTAModel'
    shapes_cfg = load_config(shapes_config_path())
    dataset = DATASETS.build(
        dict(shapes_cfg.test_dataloader.dataset,
             data_root=str(tiny_coco) + '/', pipeline=cfg.tta_pipeline))
    views = dataset[0]['data_samples']
    short_sides = list((128, 160, 192) if path == 'shapes' else
                       range(400, 1201, 100))
    assert len(views) == 2 * len(short_sides)
    seen = sorted((min(v.img_shape), v.flip) for v in views)
    assert seen == sorted((s, flip) for s in short_sides
                          for flip in (False, True))
    assert all(v.flip_direction in (None, 'horizontal') for v in views)
