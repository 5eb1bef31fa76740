"""DLA backbone: output shapes and channels, the DLA-34 size, norm_eval,
bad arguments, the docstring example."""
import doctest

import pytest
import torch
from torch import nn

from mmcentermask.models.backbones import DLA, dla


def test_dla34_levels_shapes_and_channels():
    model = DLA('dla34').eval()
    outs = model(torch.rand(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(1, 16, 64, 96),
                                              (1, 32, 32, 48),
                                              (1, 64, 16, 24),
                                              (1, 128, 8, 12),
                                              (1, 256, 4, 6),
                                              (1, 512, 2, 3)]
    assert model.out_channels == [16, 32, 64, 128, 256, 512]


def test_dla34_has_the_reference_parameter_count():
    """15,229,104 = timm's dla34 (15,742,104) without its 1000-class
    classifier (513,000): the same trees, roots and projections."""
    model = DLA('dla34')
    assert sum(p.numel() for p in model.parameters()) == 15_229_104


def test_every_parameter_gets_a_gradient():
    model = DLA('dla34', out_indices=(5, ))
    model(torch.rand(2, 3, 64, 64))[0].sum().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


def test_out_indices_and_norm_eval():
    model = DLA('dla34', out_indices=(2, 5), norm_eval=True)
    model.train()
    assert all(not m.training for m in model.modules()
               if isinstance(m, nn.BatchNorm2d))
    outs = model(torch.rand(1, 3, 32, 32))
    assert [o.shape[1] for o in outs] == model.out_channels == [64, 512]


@pytest.mark.parametrize('kwargs,error,message', [
    (dict(arch='dla35'), KeyError, 'dla35'),
    (dict(arch=dict(depths=(1, 1, 1), channels=(16, 32, 64))), ValueError,
     'needs 6 depths'),
    (dict(out_indices=(6, )), ValueError, r'out_indices=\(6,\)'),
])
def test_bad_arguments_raise(kwargs, error, message):
    with pytest.raises(error, match=message):
        DLA(**kwargs)


def test_docstring_example():
    assert doctest.testmod(dla).failed == 0
