"""ONNX Runtime against PyTorch with the converted centermask2 golden
weights on the golden photographs (PNG -> test pipeline -> graph -> pasted
masks at the original size): same detections and classes, boxes within
1e-3 px + 2e-5 x box side (see ``deploy_utils.BOX_RTOL_OF_SIDE``), scores and mask scores within 1e-5,
pasted masks IoU >= 0.99.

V-39 (about 5 s per PyTorch forward pass and a 200 MB export) is marked
slow."""
import functools
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from deploy_utils import (BOX_RTOL_OF_SIDE, GOLDEN_CONFIGS, REPO_ROOT,
                          compare, export, golden_model, pytorch_and_onnx)
from golden_utils import golden_dir

#: padded network inputs of the two images (both variants fit in it)
EXPORT_SHAPE = (608, 928)
VARIANTS = ['lite_v19_slim_dw', pytest.param('v39', marks=pytest.mark.slow)]


@pytest.fixture(scope='module', autouse=True)
def two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


@functools.lru_cache(maxsize=None)
def golden_runs(variant: str, tmp_dir: str) -> list:
    model = golden_model(variant)
    cfg = Config.fromfile(str(REPO_ROOT / GOLDEN_CONFIGS[variant]))
    runner = export(model, cfg, Path(tmp_dir) / f'{variant}.onnx',
                    shape=EXPORT_SHAPE, dynamic=True)
    images = [
        str(golden_dir() / 'images' / f'{name}.png')
        for name in ('coffee', 'moto_crop')
    ]
    return pytorch_and_onnx(model, runner, images)


@pytest.mark.parametrize('variant', VARIANTS)
@pytest.mark.parametrize('image', [0, 1], ids=['coffee', 'moto_crop'])
def test_golden_weights_onnx_equals_pytorch(variant, image,
                                            tmp_path_factory):
    tmp_dir = str(tmp_path_factory.getbasetemp() / 'golden_onnx')
    Path(tmp_dir).mkdir(exist_ok=True)
    reference, onnx = golden_runs(variant, tmp_dir)[image]
    measured = compare(
        reference,
        onnx,
        box_rtol_of_side=BOX_RTOL_OF_SIDE)
    print(f'{variant} image {image}: {measured}')
    assert measured['detections'] >= 40
