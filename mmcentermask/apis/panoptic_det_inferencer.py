"""MMDetection's ``DetInferencer`` that also writes panoptic predictions
without panopticapi.

MMDetection 3.3's ``DetInferencer.pred2dict`` needs panopticapi (not on
PyPI) for any prediction with ``pred_panoptic_seg`` and raises
``RuntimeError`` without it, so ``tools/demo.py`` stopped on every
Panoptic-CenterMask config. :class:`PanopticDetInferencer` writes the same
outputs with this package's ``id2rgb``: the instances as MMDetection does,
and the panoptic map as an RGB-encoded PNG (COCO panoptic format, void
pixels 0) under ``PRED_OUT_DIR/panoptic/``, its path in the JSON
(``panoptic_seg_path``), or the array (``panoptic_seg``) when nothing is
saved.
"""
import os.path as osp

import mmcv
import mmengine
import numpy as np
from mmdet.apis import DetInferencer
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.structures import DetDataSample

from ..evaluation.functional.panoptic_quality import VOID, id2rgb


class PanopticDetInferencer(DetInferencer):
    """``DetInferencer`` whose :meth:`pred2dict` handles
    ``pred_panoptic_seg`` without panopticapi (module docstring)."""

    def pred2dict(self,
                  data_sample: DetDataSample,
                  pred_out_dir: str = '') -> dict:
        """The prediction of one image as a dict, saved under
        ``pred_out_dir`` when given (``preds/NAME.json`` and, for a
        panoptic prediction, ``panoptic/NAME_panoptic_seg.png``)."""
        if 'pred_panoptic_seg' not in data_sample:
            return super().pred2dict(data_sample, pred_out_dir)
        instances = data_sample.clone()
        del instances.pred_panoptic_seg
        name = self._output_name(data_sample)
        result = super().pred2dict(instances, pred_out_dir)
        panoptic = self._panoptic_rgb(data_sample)
        if not pred_out_dir:
            result['panoptic_seg'] = panoptic
            return result
        png = osp.join(pred_out_dir, 'panoptic', f'{name}_panoptic_seg.png')
        mmcv.imwrite(panoptic[:, :, ::-1], png)
        result['panoptic_seg_path'] = png
        mmengine.dump(result, osp.join(pred_out_dir, 'preds', f'{name}.json'))
        return result

    def _output_name(self, data_sample: DetDataSample) -> str:
        """The file stem ``DetInferencer.pred2dict`` will use (read before
        it counts the image)."""
        if 'img_path' in data_sample:
            return osp.splitext(osp.basename(data_sample.img_path))[0]
        return str(self.num_predicted_imgs)

    def _panoptic_rgb(self, data_sample: DetDataSample) -> np.ndarray:
        """The panoptic map (label + instance id x INSTANCE_OFFSET, the
        unlabeled label = number of classes) as COCO's RGB ids, (H, W, 3)
        uint8, void 0."""
        ids = data_sample.pred_panoptic_seg.sem_seg.cpu().numpy()[0].copy()
        num_classes = len(self.model.dataset_meta['classes'])
        ids[ids % INSTANCE_OFFSET == num_classes] = VOID
        return id2rgb(ids).astype(np.uint8)
