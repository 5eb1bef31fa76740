"""Test-time augmentation (flips, scales) for CenterMask, with the masks of
all views averaged as detectron2's ``GeneralizedRCNNWithTTA`` does."""
from typing import Dict, List, Optional, Tuple

import torch
from mmdet.models.test_time_augs import DetTTAModel
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample, SampleList
from mmdet.structures.bbox import bbox2roi, bbox_flip
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torch import Tensor

from ..roi_heads.centermask_roi_head import select_class
from ..utils import to_input_frame, to_output_frame

_FLIP_DIMS = dict(horizontal=(-1, ), vertical=(-2, ), diagonal=(-2, -1))


@MODELS.register_module()
class CenterMaskTTAModel(DetTTAModel):
    """CenterMask with test-time augmentation.

    1. Every view (a ``TestTimeAug`` branch: a scale, flipped or not) runs
       backbone, FPN and the FCOS head; its detections are mapped back to
       the original image.
    2. The detections of all views are merged by class-wise NMS
       (``tta_cfg.nms``), keeping the best ``tta_cfg.max_per_img``
       (MMDetection's ``DetTTAModel`` merge).
    3. Every view runs the mask and MaskIoU heads on the merged boxes
       (mapped into that view); the mask probabilities (un-flipped) and the
       MaskIoU predictions are averaged over the views.
    4. The averaged masks are pasted once at the original size;
       ``mask_scores = scores x mean MaskIoU``.

    ``tools/test.py CONFIG CKPT --tta`` uses the config's ``tta_model`` and
    ``tta_pipeline``; the pipeline's ``PackDetInputs`` must keep the
    ``flip`` and ``flip_direction`` meta keys.

    Args:
        module (dict or nn.Module): The :class:`CenterMask` detector.
        tta_cfg (dict, optional): ``nms`` (e.g. ``dict(type='nms',
            iou_threshold=0.6)``) and ``max_per_img`` of the merge. Defaults
            to those of the detector's FCOS ``test_cfg`` (detectron2 merges
            with the model's test NMS threshold and detections per image).
        mask_scores_from_iou (bool): ``mask_scores = scores x mean
            MaskIoU`` (True) or the box scores (False: what detectron2's
            ``GeneralizedRCNNWithTTA`` gives centermask2, whose merged
            instances carry no ``mask_scores``). Defaults to True.
        data_preprocessor (dict, optional): Unused; each view goes through
            the detector's own data preprocessor.
    """

    def __init__(self,
                 tta_cfg: Optional[dict] = None,
                 mask_scores_from_iou: bool = True,
                 **kwargs) -> None:
        super().__init__(tta_cfg=tta_cfg, **kwargs)
        self.mask_scores_from_iou = mask_scores_from_iou
        if self.tta_cfg is None:
            fcos_cfg = self.module.bbox_head.test_cfg
            self.tta_cfg = ConfigDict(
                nms=fcos_cfg['nms'], max_per_img=fcos_cfg['max_per_img'])

    def test_step(self, data: Dict[str, list]) -> SampleList:
        """Predict a batch of augmented images.

        Args:
            data (dict): ``inputs`` and ``data_samples``, each a list over
                the views of per-view lists over the images.

        Returns:
            list[:obj:`DetDataSample`]: Per image, ``pred_instances`` with
            ``bboxes`` (n, 4) original-image pixels, ``scores``, ``labels``,
            ``masks`` (n, H, W) bool and ``mask_scores``.
        """
        num_views = len(data['inputs'])
        views = [
            self._detect_view({
                key: value[i]
                for key, value in data.items()
            }) for i in range(num_views)
        ]
        merged = self.merge_preds(
            [list(per_image) for per_image in zip(*(v[2] for v in views))])
        mask_probs, mask_ious = self._average_mask_preds(views, merged)
        results = self.module.roi_head.postprocess(
            [s.pred_instances for s in merged],
            mask_probs,
            mask_ious, [s.metainfo for s in merged],
            rescale=True,
            boxes_on_canvas=True)
        for sample, result in zip(merged, results):
            if not self.mask_scores_from_iou:
                result.mask_scores = result.scores.clone()
            sample.pred_instances = result
        return merged

    def _detect_view(self, view: dict) -> Tuple[tuple, SampleList, SampleList]:
        """Features and FCOS detections of one view of every image.

        Returns:
            tuple: The FPN features, the view's data samples and copies of
            them whose ``pred_instances`` hold the detections in the
            original image frame (still flipped, as ``DetTTAModel``
            expects).
        """
        detector = self.module
        batch = detector.data_preprocessor(view, False)
        samples = batch['data_samples']
        feats = detector.extract_feat(batch['inputs'])
        detections = detector.bbox_head.predict(feats, samples, rescale=False)
        outputs = []
        for sample, dets in zip(samples, detections):
            missing = {'flip', 'flip_direction'} - set(sample.metainfo)
            if missing:
                raise KeyError(
                    f'CenterMaskTTAModel needs the meta keys {sorted(missing)}'
                    f' of {sample.metainfo.get("img_path", "an image")}: '
                    'add them to meta_keys of PackDetInputs in tta_pipeline')
            output = DetDataSample(metainfo=sample.metainfo)
            output.pred_instances = InstanceData(
                bboxes=to_output_frame(dets.bboxes, sample.scale_factor),
                scores=dets.scores,
                labels=dets.labels)
            outputs.append(output)
        return feats, samples, outputs

    def _average_mask_preds(self, views: List[tuple],
                            merged: SampleList) -> Tuple[Tensor, Tensor]:
        """Mask probabilities (n, M, M) and MaskIoU (n, ) of the class of
        every merged detection of the batch, averaged over the views."""
        roi_head = self.module.roi_head
        labels = torch.cat([s.pred_instances.labels for s in merged])
        num_per_img = [len(s.pred_instances) for s in merged]
        mask_sum, iou_sum = 0., 0.
        for feats, samples, _ in views:
            boxes = [
                self._to_view(s.pred_instances.bboxes, view_sample)
                for s, view_sample in zip(merged, samples)
            ]
            results = roi_head.mask_branch(feats, bbox2roi(boxes), labels,
                                           [s.metainfo for s in samples])
            probs = select_class(results['mask_preds'], labels).sigmoid()
            mask_sum = mask_sum + self._unflip(probs, samples, num_per_img)
            iou_sum = iou_sum + select_class(results['mask_iou_preds'],
                                             labels)
        return mask_sum / len(views), iou_sum / len(views)

    @staticmethod
    def _to_view(bboxes: Tensor, sample: DetDataSample) -> Tensor:
        """Original-frame boxes (n, 4) in a view's network-input frame."""
        if sample.metainfo.get('flip', False):
            bboxes = bbox_flip(bboxes, sample.ori_shape, sample.flip_direction)
        return to_input_frame(bboxes, sample.scale_factor)

    @staticmethod
    def _unflip(probs: Tensor, samples: SampleList,
                num_per_img: List[int]) -> Tensor:
        """Mask probabilities (n, M, M) of a view, flipped back."""
        chunks = []
        for chunk, sample in zip(probs.split(num_per_img), samples):
            if sample.metainfo.get('flip', False):
                chunk = chunk.flip(_FLIP_DIMS[sample.flip_direction])
            chunks.append(chunk)
        return torch.cat(chunks)
