"""Required test settings are checked when CenterMask is built."""
import pytest
from mmdet.registry import MODELS

from detector_utils import tiny_cfg


def build_with(part, key, value):
    cfg = tiny_cfg()
    if value is None:
        cfg.test_cfg[part].pop(key)
    else:
        cfg.test_cfg[part][key] = value
    return MODELS.build(cfg)


@pytest.mark.parametrize('part,key,value,match', [
    ('rcnn', 'mask_thr_binary', None,
     r"test_cfg.rcnn has no 'mask_thr_binary'.*"
     r"model.test_cfg.rcnn.mask_thr_binary, e.g. 0.5"),
    ('rcnn', 'mask_thr_binary', 50,
     r'mask_thr_binary=50 must be a probability'),
    ('fcos', 'nms', None, r"test_cfg.fcos has no 'nms'"),
    ('fcos', 'max_per_img', None, r"test_cfg.fcos has no 'max_per_img'"),
    ('fcos', 'max_per_img', 0, r'max_per_img=0 must be a positive integer'),
    ('fcos', 'score_thr', 5, r'score_thr=5 must be in \[0, 1\]'),
])
def test_bad_test_setting_fails_at_build_time(part, key, value, match):
    with pytest.raises(ValueError, match=match):
        build_with(part, key, value)


def test_missing_part_is_named():
    cfg = tiny_cfg()
    cfg.test_cfg.pop('rcnn')
    with pytest.raises(ValueError, match="test_cfg has no 'rcnn' part"):
        MODELS.build(cfg)


def test_family_settings_build():
    MODELS.build(tiny_cfg())
