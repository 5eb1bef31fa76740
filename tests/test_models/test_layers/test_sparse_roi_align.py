"""SparseRoIAlign against mmcv's RoIAlign kernel."""
import pytest
import torch
from mmcv.ops import RoIAlign

from mmcentermask.models.layers import SparseRoIAlign
from mmcentermask.models.layers import sparse_roi_align

# float32 rounding of a sum of up to ~100 products of values <= ~5
ATOL = 1e-5


def random_rois(generator: torch.Generator,
                num: int,
                batch: int,
                height: int,
                width: int,
                stride: float,
                negative: bool = False) -> torch.Tensor:
    """RoIs in input pixels: inside, across and beyond the map's edges,
    tiny and zero-size ones included, and negative sizes if asked (only
    ``aligned=False`` accepts them)."""
    size_h, size_w = height * stride, width * stride
    x1 = torch.rand(num, generator=generator) * size_w * 1.4 - 0.2 * size_w
    y1 = torch.rand(num, generator=generator) * size_h * 1.4 - 0.2 * size_h
    w = torch.rand(num, generator=generator) * size_w * 0.8
    h = torch.rand(num, generator=generator) * size_h * 0.8
    w[:3] = torch.tensor([0., -3. if negative else 3., 0.5])
    h[:3] = torch.tensor([0., 2., -0.5 if negative else 0.])
    index = torch.randint(batch, (num, ), generator=generator).float()
    return torch.stack([index, x1, y1, x1 + w, y1 + h], 1)


@pytest.mark.parametrize('aligned,sampling_ratio', [(True, 0), (False, 0),
                                                    (True, 2),
                                                    (False, 2)])
@pytest.mark.parametrize('channels_last', [True, False])
def test_matches_mmcv(aligned, sampling_ratio, channels_last):
    generator = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 5, 13, 17, generator=generator)
    if channels_last:
        feats = feats.contiguous(memory_format=torch.channels_last)
    rois = random_rois(
        generator, 40, 2, 13, 17, stride=8., negative=not aligned)
    args = dict(output_size=(7, 6), spatial_scale=1 / 8.,
                sampling_ratio=sampling_ratio, aligned=aligned)
    expected = RoIAlign(**args)(feats.contiguous(), rois)
    layer = SparseRoIAlign(**args)
    assert layer.uses_sparse_path(feats)
    out = layer(feats, rois)
    assert out.shape == expected.shape == (40, 5, 7, 6)
    torch.testing.assert_close(out, expected, rtol=0, atol=ATOL)
    # rounding only: most bins are bit-equal, not merely close
    assert (out == expected).float().mean() > 0.5


def test_gradient_matches_mmcv():
    generator = torch.Generator().manual_seed(1)
    feats = torch.randn(1, 4, 11, 9, generator=generator)
    rois = random_rois(generator, 12, 1, 11, 9, stride=4.)
    grad_out = torch.randn(12, 4, 5, 5, generator=generator)
    grads = []
    for layer_type in (RoIAlign, SparseRoIAlign):
        leaf = feats.clone().requires_grad_()
        layer_type(5, 1 / 4.)(leaf, rois).backward(grad_out)
        grads.append(leaf.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=ATOL)


def test_large_rois_are_split(monkeypatch):
    """A matrix budget smaller than one RoI's entries: one product per RoI,
    same result."""
    generator = torch.Generator().manual_seed(2)
    feats = torch.randn(1, 3, 40, 40, generator=generator)
    rois = torch.tensor([[0., 0., 0., 300., 310.], [0., 5., 5., 20., 30.],
                         [0., 10., 0., 320., 90.]])
    layer = SparseRoIAlign(4, 1 / 8.)
    whole = layer(feats, rois)
    monkeypatch.setattr(sparse_roi_align, 'MAX_MATRIX_ENTRIES', 1)
    assert len(layer.chunks(layer.sample_grid(rois))) == 3
    torch.testing.assert_close(layer(feats, rois), whole, rtol=0, atol=0)
    torch.testing.assert_close(
        whole, RoIAlign(4, 1 / 8.)(feats, rois), rtol=0, atol=ATOL)


def test_negative_size_is_an_error_when_aligned():
    layer = SparseRoIAlign(2, 1.)
    with pytest.raises(ValueError, match=r'x2 < x1 or y2 < y1'):
        layer(torch.randn(1, 1, 8, 8), torch.tensor([[0., 5., 1., 3., 4.]]))


def test_no_rois():
    layer = SparseRoIAlign(14, 1 / 8.)
    out = layer(torch.randn(1, 6, 10, 10), torch.zeros(0, 5))
    assert out.shape == (0, 6, 14, 14)


def test_other_cases_use_mmcv():
    feats = torch.randn(1, 2, 8, 8).contiguous(
        memory_format=torch.channels_last)
    rois = torch.tensor([[0., 1., 1., 30., 20.]])
    max_layer = SparseRoIAlign(3, 1 / 4., pool_mode='max')
    assert not max_layer.uses_sparse_path(feats)
    assert not SparseRoIAlign(3, 1 / 4.).uses_sparse_path(feats.half())
    # mmcv's kernel reads NCHW: the fallback hands it a contiguous copy
    torch.testing.assert_close(
        max_layer(feats, rois),
        RoIAlign(3, 1 / 4., pool_mode='max')(feats.contiguous(), rois))
