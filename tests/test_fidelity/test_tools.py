"""The converter CLI and ``tools/test.py`` against centermask2's own COCO
evaluator output (Lite variant; marked ``slow``)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from fidelity_utils import (CONFIGS, FINAL_BOX_ATOL, FINAL_SCORE_ATOL,
                            MASK_IOU_MIN, MEASURED, assert_boxes_close,
                            assert_close, mask_ious, match_detections)
from fidelity_utils import two_threads  # noqa: F401 (autouse fixture)
from golden_utils import REPO_ROOT, golden_dir, golden_state_dict
from mmengine.config import Config

DERIVED_CONFIG = """
_base_ = {base!r}
data_root = {data_root!r}
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale={scale!r}, keep_ratio=True, backend='pillow'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True,
         poly2mask=False),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))]
test_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, ann_file='annotations.json',
                 data_prefix=dict(img=''), pipeline=test_pipeline))
test_evaluator = dict(ann_file=data_root + 'annotations.json',
                      outfile_prefix={prefix!r})
"""


def run_script(*args) -> str:
    env = dict(os.environ, OMP_NUM_THREADS='2')
    proc = subprocess.run([sys.executable, *args],
                          cwd=REPO_ROOT,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=900)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    return output


@pytest.mark.slow
def test_converter_cli_and_tools_test_match_centermask2_evaluator(tmp_path):
    """centermask2-style .pth -> converter CLI -> tools/test.py on the
    golden images; the COCO json results equal centermask2's own
    ``coco_instances_results.json`` (Lite variant)."""
    import pycocotools.mask as mask_utils
    variant = 'lite_v19_slim_dw'
    src, dst = tmp_path / 'c2_model_final.pth', tmp_path / 'converted.pth'
    torch.save({'model': golden_state_dict(variant), 'iteration': 0}, src)
    out = run_script('tools/model_converters/centermask2_to_mmdet.py',
                     str(src), str(dst), '--config', CONFIGS[variant])
    assert '194 source tensors, 194 converted, 0 dropped' in out, out
    cfg = Config.fromfile(str(REPO_ROOT / CONFIGS[variant]))
    scale = next(s['scale'] for s in cfg.test_pipeline
                 if s['type'] == 'Resize')
    config = tmp_path / 'golden_images.py'
    config.write_text(
        DERIVED_CONFIG.format(
            base=str(REPO_ROOT / CONFIGS[variant]),
            data_root=str(golden_dir() / 'images') + '/',
            scale=tuple(scale),
            prefix=str(tmp_path / 'results')))
    out = run_script('tools/test.py', str(config), str(dst), '--work-dir',
                     str(tmp_path / 'work'))
    assert 'Load checkpoint from' in out
    for marker in ('missing keys', 'unexpected key'):
        assert marker not in out, out[-4000:]

    theirs = json.loads(
        (golden_dir() / variant / 'coco_instances_results.json').read_text())
    bbox = json.loads((tmp_path / 'results.bbox.json').read_text())
    segm = json.loads((tmp_path / 'results.segm.json').read_text())
    case = f'{variant} tools/test.py'
    for image_id in sorted({r['image_id'] for r in theirs}):
        golden = [r for r in theirs if r['image_id'] == image_id]
        ours_b = [r for r in bbox if r['image_id'] == image_id]
        ours_s = [r for r in segm if r['image_id'] == image_id]
        xyxy = lambda rs: np.array(  # noqa: E731
            [[x, y, x + w, y + h] for x, y, w, h in (r['bbox'] for r in rs)])
        index = match_detections(case, f'image {image_id}', xyxy(ours_b),
                                 np.array([r['category_id'] for r in ours_b]),
                                 xyxy(golden),
                                 np.array([r['category_id'] for r in golden]))
        assert_boxes_close(case, 'json boxes (xywh -> xyxy)',
                           xyxy(ours_b)[index], xyxy(golden), FINAL_BOX_ATOL,
                           0.)
        assert_close(
            case,
            'json bbox scores', [ours_b[j]['score'] for j in index],
            [r['score'] for r in golden],
            atol=FINAL_SCORE_ATOL)
        assert_close(
            case,
            'json segm scores = mask_score',
            [ours_s[j]['score'] for j in index],
            [r['mask_score'] for r in golden],
            atol=FINAL_SCORE_ATOL)
        ours_masks = mask_utils.decode(
            [ours_s[j]['segmentation'] for j in index]).astype(bool)
        golden_rles = [dict(r['segmentation']) for r in golden]
        for rle in golden_rles:
            if isinstance(rle['counts'], str):
                rle['counts'] = rle['counts'].encode()
        golden_m = mask_utils.decode(golden_rles).astype(bool)
        ious = mask_ious(
            np.moveaxis(ours_masks, -1, 0), np.moveaxis(golden_m, -1, 0))
        MEASURED.setdefault(case, {})[f'image {image_id} mask IoU (min)'] = \
            float(ious.min())
        assert ious.min() >= MASK_IOU_MIN, (
            f'{case} image {image_id}: mask IoU {ious.min():.4f} for golden '
            f'detection {int(ious.argmin())}')
