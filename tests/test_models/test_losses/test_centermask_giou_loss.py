"""CenterMaskGIoULoss: GIoU with the +1 smoothing, by hand."""
import torch

from mmcentermask.models.losses import CenterMaskGIoULoss


def ltrb_as_boxes(ltrb) -> torch.Tensor:
    """(l, t, r, b) distances -> boxes around the origin."""
    ltrb = torch.tensor(ltrb, dtype=torch.float32)
    return torch.cat([-ltrb[:, :2], ltrb[:, 2:]], dim=1)


def test_giou_plus_one_by_hand():
    pred = ltrb_as_boxes([[1., 1., 1., 1.], [1., 1., 1., 1.]])
    target = ltrb_as_boxes([[2., 1., 1., 1.], [.5, 2., 3., .5]])
    # pair 1: A_p 4, A_t 6, I 4, U 6, E 6 -> IoU (4+1)/(6+1), no penalty
    # pair 2: A_p 4, A_t 8.75, I 2.25, U 10.5, E 4 * 3 = 12
    expected = torch.tensor([1 - 5 / 7, 1 - (3.25 / 11.5 - (12 - 10.5) / 12)])
    loss = CenterMaskGIoULoss(reduction='none')
    assert torch.allclose(loss(pred, target), expected)
    weight = torch.tensor([0.5, 2.])
    weighted = CenterMaskGIoULoss()(pred, target, weight, avg_factor=4.)
    assert torch.allclose(weighted, (weight * expected).sum() / 4.)
    with_eps = CenterMaskGIoULoss(reduction='none', enclose_eps=1.)
    assert torch.allclose(
        with_eps(pred, target)[1], torch.tensor(1 - (3.25 / 11.5 - 1.5 / 13)))


def test_giou_zero_weight_is_graph_connected_zero():
    pred = ltrb_as_boxes([[1., 1., 1., 1.]]).requires_grad_()
    loss = CenterMaskGIoULoss()(pred, pred.detach() + 1, torch.zeros(1))
    assert loss.item() == 0 and loss.grad_fn is not None
