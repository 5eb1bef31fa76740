"""The vectorised canvas assembly of point-representation CenterMask masks
equals an explicit per-instance resize-and-crop."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmcentermask.models.utils import (assemble_masks, clamp_box_size,
                                       paste_local_shapes)


def reference_masks(shapes, saliencies, boxes):
    """Per instance: resize the S x S logits to the box, crop the saliency
    with the box, multiply the sigmoids; 0 outside the box.

    Integer boxes use ``F.interpolate`` (bilinear, align_corners=False) and
    slicing. Fractional boxes sample, for every canvas pixel whose centre
    lies in the box, the bilinear interpolation of the S x S map at
    ``(centre - x1) * S / w - 0.5`` with edge clamping, written out.
    """
    num, height, width = saliencies.shape
    size = shapes.shape[-1]
    out = torch.zeros(num, height, width, dtype=torch.float64)
    for k in range(num):
        x1, y1, x2, y2 = boxes[k].tolist()
        if all(float(v).is_integer() for v in (x1, y1, x2, y2)):
            x1, y1, x2, y2 = int(x1), int(y1), int(x2), int(y2)
            local = F.interpolate(
                shapes[k][None, None].double(),
                size=(y2 - y1, x2 - x1),
                mode='bilinear',
                align_corners=False)[0, 0]
            crop = saliencies[k, max(y1, 0):y2, max(x1, 0):x2].double()
            local = local[max(y1, 0) - y1:, max(x1, 0) - x1:][:crop.shape[0],
                                                              :crop.shape[1]]
            out[k, max(y1, 0):max(y1, 0) + crop.shape[0],
                max(x1, 0):max(x1, 0) + crop.shape[1]] = (
                    local.sigmoid() * crop.sigmoid())
            continue
        grid = shapes[k].double().numpy()
        for v in range(height):
            for u in range(width):
                if not (x1 <= u + 0.5 < x2 and y1 <= v + 0.5 < y2):
                    continue
                sx = np.clip((u + 0.5 - x1) * size / (x2 - x1) - 0.5, 0,
                             size - 1)
                sy = np.clip((v + 0.5 - y1) * size / (y2 - y1) - 0.5, 0,
                             size - 1)
                x0, y0 = int(np.floor(sx)), int(np.floor(sy))
                xb, yb = min(x0 + 1, size - 1), min(y0 + 1, size - 1)
                fx, fy = sx - x0, sy - y0
                value = ((1 - fy) * ((1 - fx) * grid[y0, x0] +
                                     fx * grid[y0, xb]) + fy *
                         ((1 - fx) * grid[yb, x0] + fx * grid[yb, xb]))
                out[k, v, u] = (torch.sigmoid(torch.tensor(value)) *
                                saliencies[k, v, u].double().sigmoid())
    return out


@pytest.mark.parametrize('boxes', [
    [[2., 3., 12., 9.], [0., 0., 16., 14.], [5., 5., 6., 6.],
     [10., 1., 13., 13.]],
    [[2.3, 3.7, 11.1, 9.2], [-1.5, 0.25, 7.75, 12.5], [5.2, 5.6, 6.3, 6.8],
     [9.9, 1.1, 15.6, 13.9]],
], ids=['integer', 'fractional'])
def test_canvas_assembly_equals_per_instance_reference(boxes):
    generator = torch.Generator().manual_seed(0)
    boxes = torch.tensor(boxes)
    shapes = torch.randn(len(boxes), 8, 8, generator=generator) * 3
    saliencies = torch.randn(len(boxes), 14, 16, generator=generator) * 3
    masks, inside = assemble_masks(shapes, saliencies, boxes)
    expected = reference_masks(shapes, saliencies, boxes)
    assert masks.shape == (4, 14, 16)
    error = (masks.double() - expected).abs().max().item()
    assert error <= 1e-6, error
    assert torch.equal(inside, expected > 0)


def test_integer_box_resize_is_interpolate():
    shape = torch.arange(16.).view(1, 4, 4)
    resized, inside = paste_local_shapes(shape, torch.tensor([[1., 2., 7.,
                                                               5.]]), (6, 9))
    expected = F.interpolate(
        shape[None], size=(3, 6), mode='bilinear', align_corners=False)[0, 0]
    assert torch.allclose(resized[0, 2:5, 1:7], expected, atol=1e-6)
    assert inside[0].sum() == 18
    assert inside[0, 2:5, 1:7].all()


def test_clamp_box_size_grows_tiny_boxes_about_their_centre():
    boxes = torch.tensor([[4., 4., 4.25, 4.5], [1., 2., 5., 8.]])
    clamped = clamp_box_size(boxes, 1.0)
    assert torch.allclose(clamped[0], torch.tensor([3.625, 3.75, 4.625,
                                                    4.75]))
    assert torch.equal(clamped[1], boxes[1])
    # A one-pixel box covers exactly one canvas pixel.
    _, inside = paste_local_shapes(torch.zeros(1, 4, 4), clamped[:1], (8, 8))
    assert inside.sum() == 1 and inside[0, 4, 4]


def test_initial_masks_and_gradients_of_every_instance():
    """Gradients reach the shape and saliency logits of every instance."""
    shapes = torch.zeros(3, 4, 4, requires_grad=True)
    saliencies = torch.zeros(3, 10, 10, requires_grad=True)
    boxes = torch.tensor([[0., 0., 5., 5.], [2., 2., 9., 7.], [4., 1., 6.,
                                                               9.]])
    masks, inside = assemble_masks(shapes, saliencies, boxes)
    assert torch.allclose(masks[inside], torch.full_like(masks[inside], .25))
    assert (masks[~inside] == 0).all()
    masks.sum().backward()
    assert (shapes.grad.abs().sum(dim=(1, 2)) > 0).all()
    assert torch.equal(saliencies.grad != 0, inside)
