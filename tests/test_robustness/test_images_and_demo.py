"""Images the demo and the pipeline meet: odd formats and sizes work,
unreadable files are named with the reason and skipped, the summary counts
what was written."""
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.config import Config

from repo_paths import REPO_ROOT
from detector_utils import TINY_MODEL_LINES
from mmcentermask.utils.image_check import unreadable_reason


def _load_demo():
    """tools/demo.py as a module (tools/ stays off sys.path)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'mmcentermask_demo_tool', osp.join(REPO_ROOT, 'tools', 'demo.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


collect_images = _load_demo().collect_images

TINY = """
_base_ = {base!r}
{tiny_model}test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(96, 64), keep_ratio=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape',
                                          'img_shape', 'scale_factor'))]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
"""
QUICK_START = osp.join(
    REPO_ROOT, 'configs/centermask/'
    'centermask-lite_vovnet-v2-19-slim-dw_fpn-64_1xb8-1600i_shapes.py')


def shapes_image(h, w, channels=3, dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    top = 65535 if dtype == np.uint16 else 255
    img = rng.integers(0, top, (h, w, channels) if channels else (h, w))
    return img.astype(dtype)


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    """Readable images of every kind the issue lists, and 3 broken files."""
    root = tmp_path_factory.mktemp('images')
    good = {
        'plain.png': shapes_image(48, 64),
        'UPPER.JPG': shapes_image(48, 64, seed=1),
        'Mixed.Png': shapes_image(40, 40, seed=2),
        'gray.png': shapes_image(32, 48, channels=0),
        'rgba.png': shapes_image(32, 48, channels=4),
        'sixteen_bit.png': shapes_image(32, 48, dtype=np.uint16),
        'one_pixel.png': shapes_image(1, 1),
        'wide_20to1.png': shapes_image(10, 200),
        'ünïcödé 画像.png': shapes_image(40, 48, seed=3),
    }
    for name, img in good.items():
        ok, data = cv2.imencode(osp.splitext(name)[1].lower(), img)
        assert ok
        (root / name).write_bytes(data.tobytes())
    (root / 'empty.png').write_bytes(b'')
    data = (root / 'plain.png').read_bytes()
    (root / 'truncated.png').write_bytes(data[:len(data) // 2])
    (root / 'notes.txt').write_text('not an image\n')
    return root, sorted(good)


def test_reasons_name_what_is_wrong(folder):
    root, good = folder
    assert unreadable_reason(str(root / 'empty.png')) == 'empty file (0 bytes)'
    assert unreadable_reason(str(root /
                                 'truncated.png')).startswith('truncated')
    assert unreadable_reason(str(root /
                                 'notes.txt')).startswith('not an image')
    images, skipped = collect_images(str(root))
    assert sorted(osp.basename(p) for p in images) == good
    assert sorted(osp.basename(p) for p, _ in skipped) == [
        'empty.png', 'notes.txt', 'truncated.png'
    ]


@pytest.fixture(scope='module')
def tiny_model(tmp_path_factory):
    root = tmp_path_factory.mktemp('model')
    config = root / 'tiny.py'
    config.write_text(
        TINY.format(tiny_model=TINY_MODEL_LINES, base=QUICK_START))
    register_all_modules()
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(str(config)).model)
    model.init_weights()
    ckpt = root / 'tiny.pth'
    torch.save(
        {
            'state_dict': model.state_dict(),
            'meta': {
                'dataset_meta': {
                    'classes': ('circle', 'rectangle', 'triangle')
                }
            }
        }, ckpt)
    return str(config), str(ckpt)


def demo(*args):
    return subprocess.run([sys.executable, 'tools/demo.py', *args],
                          cwd=REPO_ROOT,
                          capture_output=True,
                          text=True,
                          timeout=600)


@pytest.mark.slow
def test_folder_draws_every_readable_file_and_lists_the_rest(
        folder, tiny_model, tmp_path):
    root, good = folder
    config, ckpt = tiny_model
    proc = demo(
        str(root), config, ckpt, '--out-dir', str(tmp_path / 'out'),
        '--score-thr', '0.0')
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(os.listdir(tmp_path / 'out' / 'vis')) == good
    err = proc.stderr
    assert f'skipped {root / "empty.png"}: empty file (0 bytes)' in err
    assert f'skipped {root / "truncated.png"}: truncated' in err
    assert f'skipped {root / "notes.txt"}: not an image' in err
    vis = tmp_path / 'out' / 'vis'
    assert f'{len(good)} pictures written to {vis}; 3 files skipped' in \
        proc.stdout
    for name in good:  # every picture is a real image of the input's size
        drawn = cv2.imread(str(tmp_path / 'out' / 'vis' / name))
        src = cv2.imread(str(root / name), cv2.IMREAD_UNCHANGED)
        assert drawn is not None and drawn.shape[:2] == src.shape[:2], name


@pytest.mark.slow
def test_single_unreadable_file_is_an_error_naming_it(folder, tiny_model,
                                                      tmp_path):
    root, _ = folder
    config, ckpt = tiny_model
    proc = demo(
        str(root / 'empty.png'), config, ckpt, '--out-dir', str(tmp_path))
    assert proc.returncode == 1
    assert f'skipped {root / "empty.png"}: empty file (0 bytes)' in proc.stderr
    assert 'the file is not a readable image; nothing was drawn' in proc.stderr
    assert 'pictures written' not in proc.stdout
