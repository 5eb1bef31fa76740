"""FuseConvBNHook: BNs of the backbone folded before testing, same outputs
up to float32 rounding."""
from types import SimpleNamespace

import pytest
import torch
from detector_utils import tiny_cfg
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from torch.nn.modules.batchnorm import _BatchNorm

from mmcentermask.engine.hooks.fuse_conv_bn_hook import FuseConvBNHook


def num_bn(module) -> int:
    return sum(isinstance(m, _BatchNorm) for m in module.modules())


@pytest.fixture
def model():
    register_all_modules()
    torch.manual_seed(0)
    detector = MODELS.build(tiny_cfg())
    detector.init_weights()
    for bn in detector.backbone.modules():  # non-trivial statistics
        if isinstance(bn, _BatchNorm):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.)
    return detector.eval()


def test_backbone_folded_same_features(model):
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        before = model.extract_feat(x)
    assert num_bn(model.backbone) > 0
    FuseConvBNHook().before_test(SimpleNamespace(model=model))
    assert num_bn(model.backbone) == 0
    with torch.no_grad():
        after = model.extract_feat(x)
    for a, b in zip(before, after):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * b.abs().max())


def test_test_time_augmentation_model_is_unwrapped(model):
    from mmcentermask.models import CenterMaskTTAModel
    tta = CenterMaskTTAModel(module=model)
    FuseConvBNHook().before_test(SimpleNamespace(model=tta))
    assert num_bn(model.backbone) == 0


def test_unknown_module_is_named(model):
    with pytest.raises(AttributeError, match="'neck_v2'"):
        FuseConvBNHook(modules=('neck_v2', )).before_test(
            SimpleNamespace(model=model))
