"""DLAUpNeck: one stride-4 map from the DLA-34 levels, with and without
DCNv2; bilinear initial upsampling; bad arguments; the docstring example."""
import doctest

import pytest
import torch
from mmcv.ops import ModulatedDeformConv2dPack
from torch import nn

from mmcentermask.models.backbones import DLA
from mmcentermask.models.necks import DLAUpNeck, dla_up_neck

DLA34_CHANNELS = [16, 32, 64, 128, 256, 512]


@pytest.mark.parametrize('use_dcn', [False, True])
def test_output_is_one_stride_4_map(use_dcn):
    torch.manual_seed(0)
    backbone = DLA('dla34')
    neck = DLAUpNeck(DLA34_CHANNELS, use_dcn=use_dcn)
    neck.init_weights()
    has_dcn = any(
        isinstance(m, ModulatedDeformConv2dPack) for m in neck.modules())
    assert has_dcn == use_dcn
    outs = neck(backbone(torch.rand(2, 3, 32, 64)))
    assert len(outs) == 1 and outs[0].shape == (2, 64, 8, 16)
    assert neck.out_channels == 64
    outs[0].sum().backward()
    assert [n for n, p in neck.named_parameters() if p.grad is None] == []


@pytest.mark.parametrize('first_level,shape', [(2, (1, 64, 16, 16)),
                                               (3, (1, 128, 8, 8))])
def test_first_level_sets_the_output_stride(first_level, shape):
    feats = DLA('dla34').eval()(torch.rand(1, 3, 64, 64))
    neck = DLAUpNeck(DLA34_CHANNELS, first_level=first_level,
                     use_dcn=False).eval()
    assert neck(feats)[0].shape == shape


def test_upsampling_starts_bilinear():
    neck = DLAUpNeck(DLA34_CHANNELS, use_dcn=False)
    neck.init_weights()
    up = neck.ida_up.up_1  # x2: 4x4 kernel
    assert isinstance(up, nn.ConvTranspose2d)
    expected = torch.tensor([0.25, 0.75, 0.75, 0.25])
    assert torch.allclose(up.weight[0, 0], expected[:, None] * expected)
    assert torch.equal(up.weight[5], up.weight[0])
    # A constant map stays constant inside after the x2 upsampling.
    out = up(torch.ones(1, 64, 4, 4))
    assert torch.allclose(out[0, :, 1:-1, 1:-1], torch.ones(64, 6, 6))


def test_bad_first_level_raises():
    with pytest.raises(ValueError, match='first_level=5'):
        DLAUpNeck(DLA34_CHANNELS, first_level=5)


def test_docstring_example():
    assert doctest.testmod(dla_up_neck).failed == 0
