"""Point-representation CenterMask end to end on a tiny shapes set through
tools/: train -> test -> demo with both shapes configs (CenterNet and
FCOS-embedded), and 2-process CPU training."""
import os
import pickle
import subprocess
import sys

import pytest

from repo_paths import REPO_ROOT

SHAPES_CONFIG = os.path.join(
    REPO_ROOT, 'configs/centermask-point/'
    'centermask-point_vovnet-v2-19-slim-dw_ct-neck-32_1xb8-500i_shapes.py')
FCOS_SHAPES_CONFIG = os.path.join(
    REPO_ROOT, 'configs/centermask-point/'
    'centermask-point_fcos_vovnet-v2-19-slim-dw_fpn-64_1xb8-1600i_shapes.py')
#: per shapes config: its model overrides (8 x 8 local shapes, at most 20
#: detections, every FCOS candidate kept), the losses it logs, and whether
#: it always returns exactly 20 detections (top-k peaks without NMS)
FAMILY = {
    'centernet': (SHAPES_CONFIG,
                  'dict(bbox_head=dict(shape_size=8), test_cfg=dict(topk=20))',
                  ('loss_center_heatmap', 'loss_wh', 'loss_offset'), True),
    'fcos': (FCOS_SHAPES_CONFIG,
             'dict(bbox_head=dict(shape_size=8), test_cfg=dict('
             'score_thr=0.0, max_per_img=20))',
             ('loss_cls', 'loss_bbox', 'loss_centerness'), False),
}

CONFIG = """
_base_ = {base!r}
data_root = {data_root!r} + '/'
model = {model}
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(96, 64), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(96, 64), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape',
                                          'img_shape', 'scale_factor'))]
loader = dict(batch_size=2, num_workers=0, persistent_workers=False)
train_dataloader = dict(**loader, dataset=dict(data_root=data_root,
                                               pipeline=train_pipeline))
val_dataloader = dict(**loader, dataset=dict(data_root=data_root,
                                             pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/val.json')
test_evaluator = val_evaluator
train_cfg = dict(max_iters=2, val_interval=2)
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False,
                        begin=0, end=2)]
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=2, max_keep_ckpts=-1))
"""


def write_config(tmp_path, data_root, family='centernet'):
    base, model = FAMILY[family][:2]
    path = tmp_path / 'tiny_point_centermask.py'
    path.write_text(
        CONFIG.format(base=base, data_root=str(data_root), model=model))
    return str(path)


def clean_env():
    return {k: v for k, v in os.environ.items()
            if k != 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'}


def run(*cmd, env=None, timeout=900):
    proc = subprocess.run(list(cmd), cwd=REPO_ROOT,
                          env={**clean_env(), **(env or {})},
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize('family', sorted(FAMILY))
def test_train_test_demo(tiny_coco, tmp_path, family):
    config = write_config(tmp_path, tiny_coco, family)
    _, _, losses, exactly_top_k = FAMILY[family]
    work_dir = tmp_path / 'work'
    out = run(sys.executable, 'tools/train.py', config, '--work-dir',
              str(work_dir))
    for key in losses + ('loss_mask', 'loss_saliency', 'coco/segm_mAP'):
        assert key in out, key
    ckpt = work_dir / 'iter_2.pth'

    results = tmp_path / 'results.pkl'
    out = run(sys.executable, 'tools/test.py', config, str(ckpt), '--out',
              str(results), '--work-dir', str(tmp_path / 'test'))
    assert 'coco/bbox_mAP' in out and 'coco/segm_mAP' in out
    with open(results, 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 3
    for pred in preds:
        inst = pred['pred_instances']
        assert set(inst) >= {'bboxes', 'scores', 'labels', 'masks'}
        assert len(inst['masks']) == len(inst['bboxes'])
        if exactly_top_k:
            assert len(inst['bboxes']) == 20
        else:
            assert 0 < len(inst['bboxes']) <= 20
        # RLE-encoded by CocoMetric, of the original image size
        assert inst['masks'][0]['size'] == list(pred['ori_shape'])

    run(sys.executable, 'tools/demo.py', str(tiny_coco / 'val'), config,
        str(ckpt), '--out-dir', str(tmp_path / 'demo'), '--score-thr', '0.0')
    pictures = sorted(os.listdir(tmp_path / 'demo' / 'vis'))
    assert pictures == sorted(os.listdir(tiny_coco / 'val'))


@pytest.mark.slow
def test_two_process_training(tiny_coco, tmp_path):
    config = write_config(tmp_path, tiny_coco)
    work_dir = tmp_path / 'dist'
    env = dict(PORT=str(29600 + os.getpid() % 1000),
               PATH=os.path.dirname(sys.executable) + ':' +
               os.environ['PATH'])
    out = run('bash', 'tools/dist_train.sh', config, '2', '--work-dir',
              str(work_dir), env=env)
    assert 'Distributed training: True' in out
    assert 'GPU number: 2' in out  # mmengine's name for the world size
    assert (work_dir / 'iter_2.pth').exists()
