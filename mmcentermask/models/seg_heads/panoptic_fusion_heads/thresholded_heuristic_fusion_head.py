"""detectron2's ``combine_semantic_and_instance_outputs`` on top of
MMDetection's ``HeuristicFusionHead``."""
from numbers import Number
from typing import List, Optional

from mmdet.models.seg_heads.panoptic_fusion_heads import HeuristicFusionHead
from mmdet.registry import MODELS
from mmdet.utils import InstanceList, PixelList
from mmengine.config import ConfigDict
from torch import Tensor

#: test_cfg keys -> (meaning, detectron2 value)
REQUIRED_TEST_CFG = {
    'score_thr': ('the box score below which an instance is left out '
                  '(INSTANCES_CONFIDENCE_THRESH)', 0.5),
    'mask_overlap': ('the fraction of an instance mask already covered '
                     'above which it is left out (OVERLAP_THRESH)', 0.5),
    'stuff_area_limit': ('the pixel count below which a stuff region is '
                         'left unlabeled (STUFF_AREA_LIMIT)', 4096),
}


@MODELS.register_module()
class ThresholdedHeuristicFusionHead(HeuristicFusionHead):
    """Heuristic panoptic fusion with an instance confidence threshold.

    detectron2's combination of instances and semantic segmentation: the
    instances with a box score of at least ``test_cfg.score_thr`` are laid
    in order of decreasing score, each skipped when more than
    ``mask_overlap`` of its mask is already covered, otherwise added on the
    pixels still free; then every stuff class of the semantic argmax takes
    the free pixels it covers if they are at least ``stuff_area_limit``
    pixels. Pixels of the semantic "things" class without an instance stay
    unlabeled. MMDetection's ``HeuristicFusionHead`` does all of this except
    the score threshold (its detectors threshold in their RoI head), which
    this class adds.

    The output is MMDetection's panoptic format: ``sem_seg`` (1, H, W) with
    ``label + instance_id * INSTANCE_OFFSET`` for things, the stuff label
    (``num_things_classes + stuff index``) for stuff and ``num_classes`` for
    unlabeled pixels.

    Args:
        test_cfg (dict): ``score_thr``, ``mask_overlap``,
            ``stuff_area_limit`` (detectron2: 0.5, 0.5, 4096).
        **kwargs: ``HeuristicFusionHead`` arguments (``num_things_classes``,
            ``num_stuff_classes``, ``init_cfg``).
    """

    def __init__(self, test_cfg: Optional[dict] = None, **kwargs) -> None:
        check_fusion_test_cfg(test_cfg)
        # HeuristicFusionHead reads its settings as attributes
        super().__init__(test_cfg=ConfigDict(test_cfg), **kwargs)

    def predict(self, mask_results_list: InstanceList,
                seg_preds_list: List[Tensor], **kwargs) -> PixelList:
        """Panoptic maps of a batch.

        Args:
            mask_results_list (list[InstanceData]): Instances per image with
                ``scores`` (N, ), ``labels`` (N, ), ``bboxes`` (N, 4) and
                ``masks`` (N, H, W) bool, in the frame of ``seg_preds``.
            seg_preds_list (list[Tensor]): Semantic logits per image,
                (num_stuff_classes + 1, H, W), "things" last.

        Returns:
            list[PixelData]: ``sem_seg`` (1, H, W) int32 per image.
        """
        thr = self.test_cfg['score_thr']
        confident = [
            results[results.scores >= thr] for results in mask_results_list
        ]
        return super().predict(confident, seg_preds_list, **kwargs)


def check_fusion_test_cfg(test_cfg) -> None:
    """Raise ValueError naming a missing or invalid fusion setting."""
    if test_cfg is None:
        raise ValueError(
            'ThresholdedHeuristicFusionHead needs test_cfg (model.test_cfg.'
            'panoptic), e.g. dict(score_thr=0.5, mask_overlap=0.5, '
            'stuff_area_limit=4096) as detectron2.')
    for key, (meaning, example) in REQUIRED_TEST_CFG.items():
        value = test_cfg.get(key)
        if not isinstance(value, Number) or isinstance(value, bool) or \
                value < 0:
            raise ValueError(
                f'model.test_cfg.panoptic.{key}={value!r}: it must be a '
                f'non-negative number ({meaning}); detectron2 uses '
                f'{example}.')
