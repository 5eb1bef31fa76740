"""CenterMaskTTAModel: one view reproduces the detector, a flipped view is
un-flipped (boxes and averaged masks), views merge, empty images work."""
import pytest
import torch
from mmdet.registry import MODELS

from detector_utils import sample, tiny_cfg

SIZE = 64


@pytest.fixture(scope='module')
def tta():
    torch.manual_seed(0)
    cfg = tiny_cfg()
    cfg.test_cfg.fcos.score_thr = 0.0
    model = MODELS.build(dict(type='CenterMaskTTAModel', module=cfg))
    model.module.init_weights()
    return model.eval()


def view(img, flip=False, seed=1):
    """One TTA view of one image: its input and data sample."""
    _, data_sample = sample(seed, size=SIZE)
    data_sample.set_metainfo(dict(flip=flip, flip_direction='horizontal'))
    data_sample.gt_instances = data_sample.gt_instances[:0]
    return (img.flip(-1) if flip else img), data_sample


def tta_data(*views):
    """``BaseTTAModel`` batch layout for one image: lists over the views."""
    return dict(
        inputs=[[v[0]] for v in views], data_samples=[[v[1]] for v in views])


def predict(detector, img, data_sample):
    data = detector.data_preprocessor(
        dict(inputs=[img], data_samples=[data_sample]), False)
    with torch.no_grad():
        return detector.predict(data['inputs'],
                                data['data_samples'])[0].pred_instances


def test_tta_cfg_defaults_to_the_fcos_test_cfg(tta):
    assert tta.tta_cfg.nms == tta.module.bbox_head.test_cfg.nms
    assert tta.tta_cfg.max_per_img == tta.module.bbox_head.test_cfg[
        'max_per_img']


def test_one_view_equals_plain_prediction(tta):
    img, _ = sample(1, size=SIZE)
    with torch.no_grad():
        out = tta.test_step(tta_data(view(img)))[0].pred_instances
    ref = predict(tta.module, *view(img))
    assert len(ref) > 0
    order = torch.argsort(ref.scores, descending=True)
    torch.testing.assert_close(out.bboxes, ref.bboxes[order])
    torch.testing.assert_close(out.scores, ref.scores[order])
    assert torch.equal(out.labels, ref.labels[order])
    assert torch.equal(out.masks, ref.masks[order])
    torch.testing.assert_close(out.mask_scores, ref.mask_scores[order])


def test_flipped_view_is_flipped_back(tta):
    """A flipped view alone = the detector on the mirrored image, mirrored
    back: boxes (x1, x2 swapped about the width) and masks."""
    img, _ = sample(2, size=SIZE)
    with torch.no_grad():
        out = tta.test_step(tta_data(view(img, flip=True)))[0].pred_instances
    mirrored = view(img.flip(-1))
    ref = predict(tta.module, *mirrored)
    order = torch.argsort(ref.scores, descending=True)
    expected = ref.bboxes[order][:, [2, 1, 0, 3]] * torch.tensor(
        [-1., 1., -1., 1.]) + torch.tensor([SIZE, 0., SIZE, 0.])
    assert len(out) == len(ref) > 0
    torch.testing.assert_close(out.bboxes, expected)
    assert torch.equal(out.masks, ref.masks[order].flip(-1))
    torch.testing.assert_close(out.mask_scores, ref.mask_scores[order])


def test_views_merge_and_masks_are_averaged(tta):
    img, _ = sample(3, size=SIZE)
    views = [view(img), view(img, flip=True)]
    with torch.no_grad():
        result = tta.test_step(tta_data(*views))[0]
        single = tta.test_step(tta_data(views[0]))[0].pred_instances
    out = result.pred_instances
    assert result.ori_shape == (SIZE, SIZE)
    assert 0 < len(out) <= tta.tta_cfg.max_per_img
    assert out.masks.shape == (len(out), SIZE, SIZE)
    assert out.masks.dtype == torch.bool
    assert torch.all(out.scores[:-1] >= out.scores[1:])
    assert torch.isfinite(out.mask_scores).all()
    # a random network is not flip-equivariant: the merge differs from one
    # view, so the second view did contribute
    assert not (len(out) == len(single)
                and torch.equal(out.masks, single.masks))


def test_image_without_detections(tta):
    tta.module.bbox_head.test_cfg['score_thr'] = 1.0
    try:
        img, _ = sample(4, size=SIZE)
        with torch.no_grad():
            out = tta.test_step(tta_data(view(img),
                                         view(img,
                                              flip=True)))[0].pred_instances
    finally:
        tta.module.bbox_head.test_cfg['score_thr'] = 0.0
    assert out.bboxes.shape == (0, 4)
    assert out.masks.shape == (0, SIZE, SIZE)
    assert len(out.mask_scores) == 0


def test_missing_flip_meta_key_is_named(tta):
    img, data_sample = sample(5, size=SIZE)
    with pytest.raises(KeyError, match=r"\['flip', 'flip_direction'\]"):
        tta.test_step(dict(inputs=[[img]], data_samples=[[data_sample]]))


def test_scaled_view_maps_back_to_the_original_size(tta):
    """A 2x view alone = the detector on the 2x image with rescale."""
    img, _ = sample(6, size=SIZE)
    big = img.repeat_interleave(2, 1).repeat_interleave(2, 2)
    big_view = view(big)
    big_view[1].set_metainfo(
        dict(img_shape=(2 * SIZE, 2 * SIZE), scale_factor=(2., 2.)))
    with torch.no_grad():
        out = tta.test_step(tta_data(big_view))[0].pred_instances
    ref = predict(tta.module, *big_view)
    order = torch.argsort(ref.scores, descending=True)
    assert len(out) == len(ref) > 0
    assert out.masks.shape[1:] == (SIZE, SIZE)
    torch.testing.assert_close(out.bboxes, ref.bboxes[order])
    assert torch.equal(out.masks, ref.masks[order])
    torch.testing.assert_close(out.mask_scores, ref.mask_scores[order])


def test_box_scores_as_mask_scores_switch(tta):
    img, _ = sample(3, size=SIZE)
    tta.mask_scores_from_iou = False
    try:
        with torch.no_grad():
            out = tta.test_step(tta_data(view(img)))[0].pred_instances
    finally:
        tta.mask_scores_from_iou = True
    assert len(out) > 0
    assert torch.equal(out.mask_scores, out.scores)
