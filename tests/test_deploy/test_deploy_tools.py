"""The deployment tools end to end on a tiny random-weight model of the
quick-start config and the tiny shapes set: pytorch2onnx.py (dynamic,
simplified; fixed size by default), test_onnx.py against the PyTorch
evaluation of the same model, demo.py --backend onnxruntime."""
import json
import os
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from deploy_utils import REPO_ROOT, build_model
from detector_utils import TINY_MODEL_LINES

QUICK_START = str(REPO_ROOT / 'configs/centermask/'
                  'centermask-lite_vovnet-v2-19-slim-dw_fpn-64_1xb8-1600i_'
                  'shapes.py')
CONFIG = """
_base_ = {base!r}
data_root = {data_root!r} + '/'
{tiny_model}test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(96, 64), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True,
         poly2mask=False),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape',
                                          'img_shape', 'scale_factor'))]
test_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                       dataset=dict(data_root=data_root,
                                    pipeline=test_pipeline))
test_evaluator = dict(ann_file=data_root + 'annotations/val.json')
"""
METRICS = ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP',
           'coco/segm_mAP_50')


def run_tool(*args: str) -> str:
    result = subprocess.run([sys.executable, *args],
                            cwd=REPO_ROOT,
                            capture_output=True,
                            text=True,
                            env=dict(os.environ, OMP_NUM_THREADS='2'))
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.fixture(scope='module')
def tiny_checkpoint(tiny_coco, tmp_path_factory):
    work = tmp_path_factory.mktemp('deploy_tools')
    config = work / 'tiny.py'
    config.write_text(
        CONFIG.format(
            tiny_model=TINY_MODEL_LINES, base=QUICK_START,
            data_root=str(tiny_coco)))
    cfg = Config.fromfile(str(config))
    model = build_model(cfg)
    checkpoint = work / 'tiny.pth'
    torch.save(dict(state_dict=model.state_dict(), meta={}), checkpoint)
    return cfg, config, checkpoint, model


def pytorch_metrics(cfg: Config, model: torch.nn.Module) -> dict:
    """tools/test.py's evaluation of the PyTorch model, in process."""
    from mmengine.evaluator import Evaluator
    from mmengine.runner import Runner
    dataloader = Runner.build_dataloader(cfg.test_dataloader)
    evaluator = Evaluator(cfg.test_evaluator)
    evaluator.dataset_meta = dataloader.dataset.metainfo
    for data_batch in dataloader:
        with torch.no_grad():
            evaluator.process(model.test_step(data_batch), data_batch)
    return evaluator.evaluate(len(dataloader.dataset))


@pytest.mark.slow
def test_export_evaluate_and_demo(tiny_checkpoint, tiny_coco, tmp_path):
    cfg, config, checkpoint, model = tiny_checkpoint
    onnx_file = tmp_path / 'tiny.onnx'
    out = run_tool('tools/deployment/pytorch2onnx.py', str(config),
                   str(checkpoint), '--out', str(onnx_file), '--dynamic',
                   '--shape', '64', '96', '--simplify')
    assert 'dynamic height/width' in out and onnx_file.is_file()

    metrics_file = tmp_path / 'metrics.json'
    out = run_tool('tools/deployment/test_onnx.py', str(config),
                   str(onnx_file), '--threads', '2', '--out',
                   str(metrics_file))
    assert 'Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all' in out
    onnx_metrics = json.loads(metrics_file.read_text())
    expected = pytorch_metrics(cfg, model)
    for key in METRICS:
        assert abs(onnx_metrics[key] - expected[key]) <= 0.002, (
            key, onnx_metrics[key], expected[key])

    out_dir = tmp_path / 'demo'
    run_tool('tools/demo.py', str(tiny_coco / 'val'), str(config),
             str(onnx_file), '--backend', 'onnxruntime', '--out-dir',
             str(out_dir), '--score-thr', '0.0')
    drawn = sorted(p.name for p in (out_dir / 'vis').iterdir())
    assert drawn == sorted(os.listdir(tiny_coco / 'val'))


@pytest.mark.slow
def test_dynamic_export_by_default_fixed_when_asked_and_dcn_error(
        tiny_checkpoint, tmp_path):
    _, config, checkpoint, _ = tiny_checkpoint
    out = run_tool('tools/deployment/pytorch2onnx.py', str(config),
                   str(checkpoint), '--out', str(tmp_path / 'default.onnx'))
    # traced at the test scale (96, 64) padded to 32
    assert 'dynamic height/width, traced at 64x96' in out
    assert 'fixed' not in out
    out = run_tool('tools/deployment/pytorch2onnx.py', str(config),
                   str(checkpoint), '--out', str(tmp_path / 'fixed.onnx'),
                   '--shape', '64', '96')
    assert 'fixed 64x96 input' in out
    assert 'the ONNX model takes a fixed 64x96 input' in out
    assert 'Export without --shape' in out

    dcn_config = tmp_path / 'dcn.py'
    dcn_config.write_text(
        f"_base_ = {str(config)!r}\n"
        "model = dict(backbone=dict(arch='V-19-slim', dcn=dict(type='DCNv2', "
        "deform_groups=1), stage_with_dcn=(False, False, False, True)))\n")
    result = subprocess.run([
        sys.executable, 'tools/deployment/pytorch2onnx.py',
        str(dcn_config), 'none', '--out', str(tmp_path / 'dcn.onnx')
    ], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode != 0
    assert 'deformable convolution' in result.stderr
