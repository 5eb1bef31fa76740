"""AdaptiveLevelRoIExtractor: level rules, image areas, pooling."""
import pytest
import torch
from mmdet.structures.bbox import bbox2roi

from mmcentermask.models import AdaptiveLevelRoIExtractor, SparseRoIAlign

ROI_LAYER = dict(
    type='RoIAlign', output_size=14, sampling_ratio=0, aligned=True)


def make_extractor(roi_layer: dict = ROI_LAYER,
                   **kwargs) -> AdaptiveLevelRoIExtractor:
    return AdaptiveLevelRoIExtractor(
        roi_layer=roi_layer,
        out_channels=4,
        featmap_strides=[8, 16, 32],
        **kwargs)


def levels_of(extractor, boxes, img_areas):
    """Absolute FPN level of each box (x1, y1, x2, y2)."""
    rois = bbox2roi([torch.tensor(boxes, dtype=torch.float32)])
    return (extractor.map_roi_levels(
        rois, torch.full(
            (len(boxes), ), float(img_areas))) + extractor.min_level).tolist()


def test_ratio_rule_thresholds():
    """P5 iff A_box > A_img/2, P4 iff A_img/4 < A_box <= A_img/2, else P3."""
    extractor = make_extractor()
    img_area = 600 * 900  # 540000
    boxes = [
        [0, 0, 900, 600],  # A_img        -> P5
        [0, 0, 900, 301],  # > A_img / 2  -> P5
        [0, 0, 900, 300],  # = A_img / 2  -> P4
        [10, 20, 910, 170.5],  # > A_img / 4 -> P4
        [10, 20, 910, 170],  # = A_img / 4  -> P3
        [0, 0, 30, 30],  # small          -> P3
        [5, 5, 5, 40],  # zero area       -> P3
        [7, 7, 7, 7],  # point            -> P3
        [50, 50, 40, 10],  # degenerate   -> P3
        [-500, -500, 1500, 1500],  # larger than the image -> P5
    ]
    assert levels_of(extractor, boxes,
                     img_area) == [5, 5, 4, 4, 3, 3, 3, 3, 3, 5]


def test_ratio_rule_extends_to_p2():
    """With P2-P5 (the stride-4 mask level) the thresholds stay, one more
    below: P3 iff A_img/8 < A_box <= A_img/4, else P2."""
    extractor = AdaptiveLevelRoIExtractor(
        roi_layer=ROI_LAYER, out_channels=4, featmap_strides=[4, 8, 16, 32])
    img_area = 600 * 900
    boxes = [
        [0, 0, 900, 301],  # > A_img / 2  -> P5
        [0, 0, 900, 300],  # = A_img / 2  -> P4
        [10, 20, 910, 170],  # = A_img / 4  -> P3
        [0, 0, 900, 75.5],  # > A_img / 8 -> P3
        [0, 0, 900, 75],  # = A_img / 8   -> P2
        [0, 0, 30, 30],  # small          -> P2
        [5, 5, 5, 40],  # zero area       -> P2
    ]
    assert levels_of(extractor, boxes, img_area) == [5, 4, 3, 3, 2, 2, 2]


def test_area_rule():
    """FPN Eq. 1 with 224 at P4: P3 if sqrt(A) < 224, P4 if < 448, else
    P5, independent of the image size."""
    extractor = make_extractor(level_rule='area')
    boxes = [[0, 0, 223.9, 224], [0, 0, 224, 224], [0, 0, 447, 448],
             [0, 0, 448, 448], [0, 0, 0, 50], [0, 0, 10, 10]]
    assert levels_of(extractor, boxes, 1.) == [3, 4, 4, 5, 3, 3]


def test_per_image_img_shape():
    """Each RoI uses its own image's unpadded area, not the batch's."""
    extractor = make_extractor()
    box = [0, 0, 350, 350]  # 122500
    rois = bbox2roi([torch.tensor([box], dtype=torch.float32)] * 2)
    metas = [dict(img_shape=(300, 600)), dict(img_shape=(600, 900))]
    feats = [torch.zeros(2, 4, 80 // s, 120 // s) for s in (1, 2, 4)]
    areas = extractor.roi_image_areas(feats, rois, metas)
    assert areas.tolist() == [180000., 540000.]
    levels = extractor.map_roi_levels(rois, areas) + 3
    assert levels.tolist() == [5, 3]


def test_fallback_without_metas_uses_padded_batch_shape():
    extractor = make_extractor()
    feats = [torch.zeros(2, 4, 76 // s, 116 // s) for s in (1, 2, 4)]
    rois = bbox2roi([torch.tensor([[0., 0., 10., 10.]])] * 2)
    areas = extractor.roi_image_areas(feats, rois)
    assert areas.tolist() == [608. * 928.] * 2


def test_forward_pools_each_roi_from_its_level():
    """Constant maps per level: every pooled RoI equals its level's value;
    extra (P6/P7) maps are ignored; works without metas."""
    extractor = make_extractor()
    feats = tuple(
        torch.full((1, 4, 128 // s, 128 // s), float(level))
        for level, s in zip((3, 4, 5, 6, 7), (1, 2, 4, 8, 16)))
    boxes = torch.tensor([[8., 8., 40., 40.], [0., 0., 1000., 1000.],
                          [0., 0., 500., 600.]])
    rois = bbox2roi([boxes])
    out = extractor(
        feats, rois, batch_img_metas=[dict(img_shape=(1000, 1000))])
    assert out.shape == (3, 4, 14, 14)
    assert out[:, 0, 7, 7].tolist() == [3., 5., 4.]
    torch.testing.assert_close(
        out,
        extractor(feats, rois, batch_img_metas=[dict(img_shape=(1000, 1000))]))
    out_padded = extractor(feats, rois)  # 1024 x 1024 padded batch
    assert out_padded[:, 0, 7, 7].tolist() == [3., 5., 4.]


def test_empty_levels_stay_in_graph():
    extractor = make_extractor()
    feats = [
        torch.randn(1, 4, 64 // s, 64 // s, requires_grad=True)
        for s in (1, 2, 4)
    ]
    rois = bbox2roi([torch.tensor([[0., 0., 16., 16.]])])
    extractor(feats, rois).sum().backward()
    assert all(f.grad is not None for f in feats)
    assert feats[0].grad.abs().sum() > 0
    assert feats[2].grad.abs().sum() == 0

    empty = extractor(feats, rois[:0])
    assert empty.shape == (0, 4, 14, 14) and empty.requires_grad


def test_registered_roi_layer_matches_mmcv_op():
    """A roi_layer type registered in MODELS (SparseRoIAlign) is built per
    stride; on channels-last maps its pooled RoIs stay channels-last and
    equal mmcv's RoIAlign up to float32 rounding, RoIs of every level."""
    sparse = make_extractor(dict(ROI_LAYER, type='SparseRoIAlign'))
    assert [type(layer) for layer in sparse.roi_layers] == [SparseRoIAlign] * 3
    assert [layer.spatial_scale for layer in sparse.roi_layers] == [
        1 / 8, 1 / 16, 1 / 32
    ]
    torch.manual_seed(0)
    feats = tuple(
        torch.randn(1, 4, 128 // s, 128 // s).contiguous(
            memory_format=torch.channels_last) for s in (8, 16, 32))
    rois = bbox2roi([
        torch.tensor([[8., 8., 40., 40.], [0., 0., 120., 128.],
                      [3., 10., 100., 70.]])
    ])
    metas = [dict(img_shape=(128, 128))]
    assert make_extractor().map_roi_levels(
        rois, torch.full((3, ), 128. * 128)).tolist() == [0, 2, 1]
    out = sparse(feats, rois, batch_img_metas=metas)
    assert out.is_contiguous(memory_format=torch.channels_last)
    # mmcv's kernel needs NCHW maps (README.md, Known limits)
    nchw = tuple(feat.contiguous() for feat in feats)
    torch.testing.assert_close(
        out,
        make_extractor()(nchw, rois, batch_img_metas=metas),
        rtol=0,
        atol=1e-5)


def test_unknown_roi_layer_type_is_an_error():
    with pytest.raises(KeyError, match="'RoIPool2' is neither an mmcv op"):
        make_extractor(dict(ROI_LAYER, type='RoIPool2'))


def test_invalid_arguments():
    with pytest.raises(ValueError, match='level_rule'):
        make_extractor(level_rule='scale')
    with pytest.raises(ValueError, match='featmap_strides'):
        AdaptiveLevelRoIExtractor(ROI_LAYER, 4, featmap_strides=[8, 32])
    extractor = make_extractor()
    with pytest.raises(ValueError, match='feature maps'):
        extractor([torch.zeros(1, 4, 8, 8)], torch.zeros(1, 5))


def ramp_feats() -> tuple:
    """P3-P5 maps of 128 x 128 px whose values change along x and y (a
    sample's position shows in its value)."""
    maps = []
    for stride in (8, 16, 32):
        side = 128 // stride
        ys, xs = torch.meshgrid(
            torch.arange(side, dtype=torch.float32),
            torch.arange(side, dtype=torch.float32),
            indexing='ij')
        maps.append(torch.stack([xs, ys, xs * ys, xs + 2 * ys])[None])
    return tuple(maps)


@pytest.mark.parametrize('roi_type', ['RoIAlign', 'SparseRoIAlign'])
def test_near_empty_and_empty_boxes_pool_alike(roi_type):
    """A box of exactly zero width (or height) is pooled as the box a
    float32 hair wider (what another runtime's regression gives): the line
    it lies on, not zeros."""
    extractor = make_extractor(dict(ROI_LAYER, type=roi_type))
    empty = [[36., 10., 36., 40.], [20., 52., 60., 52.], [9., 9., 9., 9.]]
    hair = [[35.99968, 10., 36., 40.], [20., 52., 60., 52.0003],
            [9., 9., 9.0002, 9.0001]]
    feats = ramp_feats()
    pooled_empty = extractor(feats, bbox2roi([torch.tensor(empty)]))
    pooled_hair = extractor(feats, bbox2roi([torch.tensor(hair)]))
    assert pooled_empty.abs().amin(dim=(1, 2, 3)).gt(0).all()
    torch.testing.assert_close(pooled_empty, pooled_hair, rtol=0, atol=1e-3)


def test_min_roi_size_zero_pools_empty_boxes_as_the_authors():
    """``min_roi_size=0``: mmcv's (and detectron2's) zeros for an empty box,
    real features for a box a hair wide."""
    extractor = make_extractor(min_roi_size=0)
    feats = ramp_feats()
    rois = bbox2roi([torch.tensor([[36., 10., 36., 40.],
                                   [35.99968, 10., 36., 40.]])])
    pooled = extractor(feats, rois)
    assert pooled[0].abs().max() == 0
    assert pooled[1].abs().min() > 0


def test_boxes_of_at_least_min_roi_size_pool_unchanged():
    boxes = torch.tensor([[36., 10., 36.001, 40.], [8., 8., 40., 40.],
                          [0.5, 3.25, 100., 17.]])
    rois = bbox2roi([boxes])
    feats = ramp_feats()
    assert torch.equal(
        make_extractor()(feats, rois),
        make_extractor(min_roi_size=0)(feats, rois))
    assert torch.equal(make_extractor().with_min_extent(boxes), boxes)


def test_invalid_boxes_are_left_for_the_roi_layer_to_refuse():
    boxes = torch.tensor([[40., 10., 36., 40.]])
    assert torch.equal(make_extractor().with_min_extent(boxes), boxes)
    extractor = make_extractor(
        dict(ROI_LAYER, type='SparseRoIAlign'))
    with pytest.raises(ValueError, match='x2 < x1'):
        extractor(ramp_feats(), bbox2roi([boxes]))


def test_negative_min_roi_size_is_an_error():
    with pytest.raises(ValueError, match='min_roi_size'):
        make_extractor(min_roi_size=-1)
