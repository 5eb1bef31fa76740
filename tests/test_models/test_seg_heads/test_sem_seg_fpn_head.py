"""SemSegFPNHead: detectron2's loss (full-resolution cross-entropy, mean
over non-ignored pixels, things last in our layout), output frames, init and
the errors of a pipeline without semantic GT."""
import pytest
import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.structures import PixelData

import mmcentermask  # noqa: F401 (registers the head)

NUM_THINGS, NUM_STUFF = 3, 2


@pytest.fixture
def head():
    torch.manual_seed(0)
    module = MODELS.build(
        dict(
            type='SemSegFPNHead',
            num_things_classes=NUM_THINGS,
            num_stuff_classes=NUM_STUFF,
            in_channels=8,
            inner_channels=8,
            norm_cfg=dict(type='GN', num_groups=4)))
    module.init_weights()
    return module


def pyramid(batch=1, size=32):
    """P2-P5 of a (size x size) input, 8 channels."""
    return tuple(
        torch.randn(batch, 8, size // s, size // s) for s in (4, 8, 16, 32))


def sample_with_gt(sem):
    sample = DetDataSample(
        metainfo=dict(img_shape=(28, 30), ori_shape=(56, 60)))
    sample.gt_sem_seg = PixelData(sem_seg=sem[None])
    return sample


def test_loss_is_detectron2s(head):
    torch.manual_seed(1)
    x = pyramid()
    sem = torch.randint(0, NUM_THINGS + NUM_STUFF, (32, 32))
    sem[:, :5] = 255  # ignored
    loss = head.loss(x, [sample_with_gt(sem)])['loss_seg']
    # detectron2: logits upsampled x4 (bilinear), CE ignoring 255 (mean over
    # the rest), weight 0.5; its labels: things 0, stuff 1..S. Ours: stuff
    # 0..S-1, things S.
    logits = F.interpolate(
        head(x)['seg_preds'],
        scale_factor=4,
        mode='bilinear',
        align_corners=False)
    d2_logits = torch.cat([logits[:, -1:], logits[:, :-1]], dim=1)
    d2_labels = torch.where(sem < NUM_THINGS, 0, sem - NUM_THINGS + 1)
    d2_labels[sem == 255] = 255
    expected = 0.5 * F.cross_entropy(
        d2_logits, d2_labels[None], ignore_index=255)
    assert torch.allclose(loss, expected, rtol=1e-5)


def test_all_ignored_gives_zero_loss(head):
    loss = head.loss(pyramid(), [sample_with_gt(torch.full((32, 32), 255))])
    assert loss['loss_seg'].item() == 0.0


@pytest.mark.parametrize('rescale, size', [(True, (56, 60)),
                                           (False, (28, 30))])
def test_predict_frames(head, rescale, size):
    meta = dict(
        img_shape=(28, 30), ori_shape=(56, 60), batch_input_shape=(32, 32))
    with torch.no_grad():
        preds = head.predict(pyramid(), [meta], rescale=rescale)
    assert preds[0].shape == (NUM_STUFF + 1, ) + size


def test_predictor_init_is_msra(head):
    assert torch.count_nonzero(head.conv_logits.bias) == 0
    # Kaiming normal, fan-out (3 outputs): std sqrt(2 / 3) ~ 0.82, not 0.01
    assert head.conv_logits.weight.std() > 0.3


def test_missing_semantic_gt_is_named(head):
    with pytest.raises(ValueError, match='LoadPanopticAnnotations'):
        head.loss(pyramid(), [DetDataSample()])


def test_unpadded_semantic_gt_is_named(head):
    samples = [
        sample_with_gt(torch.zeros(32, 32, dtype=torch.long)),
        sample_with_gt(torch.zeros(32, 28, dtype=torch.long))
    ]
    with pytest.raises(ValueError, match='pad_seg=True'):
        head.loss(pyramid(batch=2), samples)


def test_unpadded_gt_is_padded_with_ignore(head):
    """One image whose GT is smaller than the padded input: the missing
    rows and columns are ignored, as if the preprocessor had padded them."""
    torch.manual_seed(2)
    x = pyramid()
    sem = torch.randint(0, NUM_THINGS + NUM_STUFF, (28, 30))
    padded = torch.full((32, 32), 255)
    padded[:28, :30] = sem
    loss = head.loss(x, [sample_with_gt(sem)])['loss_seg']
    expected = head.loss(x, [sample_with_gt(padded)])['loss_seg']
    assert torch.equal(loss, expected)


def test_gt_larger_than_input_is_named(head):
    with pytest.raises(ValueError, match='larger than the padded input'):
        head.loss(pyramid(), [sample_with_gt(torch.zeros(40, 32).long())])
