"""Check the test settings of a CenterMask config when the model is built.

Without this, a missing ``test_cfg.rcnn.mask_thr_binary`` or
``test_cfg.fcos.nms`` only fails at the first prediction (an ``AttributeError``
deep inside MMDetection's heads), and an out-of-range threshold
(``mask_thr_binary=50``) gives empty masks without an error.
"""
from numbers import Number
from typing import Mapping, Optional

# key -> (what it is, the family configs' value); checked when test_cfg is
# given.
FCOS_REQUIRED = {
    'nms':
    ('the NMS of the FCOS detections', "dict(type='nms', iou_threshold=0.6)"),
    'max_per_img':
    ('how many detections per image go to the mask branch', '50'),
}
RCNN_REQUIRED = {
    'mask_thr_binary':
    ('the mask probability above which a pixel is foreground', '0.5'),
}


def check_test_cfg(test_cfg: Optional[Mapping]) -> None:
    """Raise ``ValueError`` naming the missing or invalid key of ``test_cfg``.

    Args:
        test_cfg (Mapping, optional): ``CenterMask``'s ``test_cfg`` with
        ``fcos`` and
            ``rcnn`` parts. Nothing is checked when it is empty (a model built
            for training only).
    """
    if not test_cfg:
        return
    for part, required in (('fcos', FCOS_REQUIRED), ('rcnn', RCNN_REQUIRED)):
        cfg = test_cfg.get(part)
        if cfg is None:
            raise ValueError(
                f'CenterMask test_cfg has no {part!r} part (it has '
                f'{sorted(test_cfg)}); set model.test_cfg.{part}, as the '
                'configs in configs/centermask/ do.')
        for key, (meaning, example) in required.items():
            if cfg.get(key) is None:
                raise ValueError(
                    f'CenterMask test_cfg.{part} has no {key!r} ({meaning}); '
                    f'set model.test_cfg.{part}.{key}, e.g. {example}.')
    thr = test_cfg['rcnn']['mask_thr_binary']
    if not isinstance(thr, Number) or not 0 <= thr <= 1:
        raise ValueError(
            f'CenterMask test_cfg.rcnn.mask_thr_binary={thr!r} must be a '
            'probability in [0, 1] (0.5 in the family configs); a larger '
            'value gives empty masks.')
    score_thr = test_cfg['fcos'].get('score_thr', 0)
    if not isinstance(score_thr, Number) or not 0 <= score_thr <= 1:
        raise ValueError(
            f'CenterMask test_cfg.fcos.score_thr={score_thr!r} must be in [0, '
            '1] (0.05 in the family configs).')
    max_per_img = test_cfg['fcos']['max_per_img']
    if not isinstance(max_per_img, int) or max_per_img < 1:
        raise ValueError(
            f'CenterMask test_cfg.fcos.max_per_img={max_per_img!r} must be a '
            'positive integer (50 in the family configs).')
