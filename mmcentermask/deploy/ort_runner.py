"""Run an exported CenterMask with ONNX Runtime and return MMDetection's
``DetDataSample`` s, so that MMDetection's visualizer and ``CocoMetric``
work unchanged.

Host side, around the graph (:mod:`mmcentermask.deploy.export`): the
config's test pipeline, its data preprocessor (normalisation, padding),
and, after the graph, the rescaling of the boxes to the original image,
clipping, and pasting of the 28 x 28 masks (:meth:`ONNXRuntimeCenterMask.
paste_masks`, the output-frame code of the PyTorch RoI head).
"""
import copy
import warnings
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import onnxruntime
import torch
from mmcv.transforms import Compose
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData
from torch import Tensor, nn

from ..models.utils import output_canvas_shape, postprocess_instances
from .export import OUTPUT_NAMES, fixed_size_caveat

ImageInput = Union[str, np.ndarray]


class ONNXRuntimeCenterMask:
    """An exported CenterMask in an ONNX Runtime session.

    One image per session run; a batch from a dataloader is normalised and
    padded together by the config's data preprocessor (as in PyTorch) and
    its images are run one after the other. A model exported with a fixed
    input size gets every input zero-padded to that size (larger inputs
    are an error), which changes the results compared with PyTorch: the
    first image that needs it warns once, naming both sizes.

    Args:
        config (str or :obj:`Config`): The model's config (test pipeline,
            data preprocessor, test cfg).
        onnx_file (str): The exported model.
        num_threads (int, optional): ONNX Runtime intra-op threads
            (its default, the number of cores, if None).

    Example::

        >>> runner = ONNXRuntimeCenterMask(CONFIG, 'centermask.onnx')
        >>> sample = runner.infer(['demo.jpg'])[0]
        >>> sample.pred_instances.masks.shape  # (n, H, W) bool
    """

    def __init__(self,
                 config: Union[str, Config],
                 onnx_file: str,
                 num_threads: Optional[int] = None) -> None:
        cfg = (Config.fromfile(config)
               if isinstance(config, str) else copy.deepcopy(config))
        init_default_scope(cfg.get('default_scope', 'mmdet'))
        options = onnxruntime.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
        self.session = onnxruntime.InferenceSession(
            onnx_file, options, providers=['CPUExecutionProvider'])
        self.input_names = [i.name for i in self.session.get_inputs()]
        image_shape = self.session.get_inputs()[0].shape
        self.fixed_size = (
            tuple(image_shape[2:])
            if all(isinstance(s, int) for s in image_shape[2:]) else None)
        self.cfg = cfg
        self.data_preprocessor: nn.Module = MODELS.build(
            cfg.model.data_preprocessor)
        # the output frame of the PyTorch RoI head
        self.clip_boxes = cfg.model.roi_head.get('clip_boxes', True)
        self.mask_thr_binary = cfg.model.test_cfg.rcnn.mask_thr_binary
        self._warned_fixed_size = False
        self._pipeline: Optional[Compose] = None
        self._pipeline_for_arrays: Optional[bool] = None

    def infer(self, images: Sequence[ImageInput]) -> List[DetDataSample]:
        """Detect and segment images given as paths or BGR arrays.

        Args:
            images (Sequence[str or ndarray]): Image files, or (H, W, 3)
                uint8 BGR arrays.

        Returns:
            list[:obj:`DetDataSample`]: See :meth:`predict`.
        """
        return [
            self.predict(pseudo_collate([self._load(image)]))[0]
            for image in images
        ]

    def _load(self, image: ImageInput) -> dict:
        """The config's test pipeline (without annotations) on one image."""
        from_array = isinstance(image, np.ndarray)
        if self._pipeline is None or self._pipeline_for_arrays != from_array:
            steps = [
                copy.deepcopy(step)
                for step in self.cfg.test_dataloader.dataset.pipeline
                if 'LoadAnnotations' not in step['type']
            ]
            if from_array:
                steps[0] = dict(type='mmdet.LoadImageFromNDArray')
            self._pipeline = Compose(steps)
            self._pipeline_for_arrays = from_array
        data = dict(img=image, img_id=0) if from_array else dict(
            img_path=image, img_id=0)
        return self._pipeline(data)

    def predict(self, data_batch: dict) -> List[DetDataSample]:
        """Detect and segment a batch from the test pipeline (as
        ``model.test_step``).

        Args:
            data_batch (dict): ``inputs`` (list of (3, H, W) uint8 tensors)
                and ``data_samples`` (list of :obj:`DetDataSample`), e.g.
                from the config's test dataloader.

        Returns:
            list[:obj:`DetDataSample`]: With ``pred_instances``: ``bboxes``
            (n, 4) in pixels of the original image, ``scores`` (n, ),
            ``labels`` (n, ), ``masks`` (n, H, W) bool at the original size
            and ``mask_scores`` (n, ).
        """
        data = self.data_preprocessor(data_batch, False)
        samples = data['data_samples']
        for image, sample in zip(data['inputs'], samples):
            outputs = self.run(image[None], sample.metainfo['img_shape'][:2])
            sample.pred_instances = self.paste_masks(outputs, sample.metainfo)
        return samples

    def run(self, image: Tensor,
            image_size: Tuple[int, int]) -> Tuple[np.ndarray, ...]:
        """One session run.

        Args:
            image (Tensor): Normalised padded image, shape (1, 3, H, W).
            image_size (tuple[int, int]): (h, w) before padding.

        Returns:
            tuple[ndarray]: The graph outputs (:data:`OUTPUT_NAMES`).

        Raises:
            ValueError: The image is larger than a fixed export size.
        """
        if self.fixed_size is not None:
            image = self._pad_to_fixed_size(image)
        feed = dict(
            image=image.numpy(),
            image_size=np.asarray(image_size, dtype=np.int64))
        return tuple(
            self.session.run(
                list(OUTPUT_NAMES),
                {name: feed[name]
                 for name in self.input_names}))

    def _pad_to_fixed_size(self, image: Tensor) -> Tensor:
        """Zero-pad (bottom, right) to the export size; warn the first time
        that changes the image's size."""
        height, width = image.shape[-2:]
        fixed_h, fixed_w = self.fixed_size
        if height > fixed_h or width > fixed_w:
            raise ValueError(
                f'padded image {height}x{width} does not fit the model, '
                f'exported for a fixed {fixed_h}x{fixed_w} input; export '
                'with a larger --shape or with dynamic height and width')
        if (height, width) != (fixed_h, fixed_w) and not (
                self._warned_fixed_size):
            self._warned_fixed_size = True
            warnings.warn(
                fixed_size_caveat(self.fixed_size, (height, width)))
        return nn.functional.pad(image,
                                 (0, fixed_w - width, 0, fixed_h - height))

    def paste_masks(self, outputs: Sequence[np.ndarray],
                    img_meta: dict) -> InstanceData:
        """Host-side post-processing of one image's graph outputs: boxes to
        the original image, clipped, empty boxes dropped, masks pasted, with
        :func:`~mmcentermask.models.utils.postprocess_instances`, the
        function the PyTorch RoI head uses.

        Args:
            outputs (Sequence[ndarray]): ``boxes`` (n, 4), ``scores`` (n, ),
                ``labels`` (n, ), ``mask_probs`` (n, M, M), ``mask_scores``
                (n, ) of the graph.
            img_meta (dict): ``ori_shape`` and ``scale_factor`` (w, h).

        Returns:
            :obj:`InstanceData`: See :meth:`predict`.
        """
        boxes, scores, labels, mask_probs, mask_scores = (
            torch.from_numpy(np.ascontiguousarray(o)) for o in outputs)
        detections = InstanceData(bboxes=boxes, scores=scores, labels=labels)
        return postprocess_instances(
            detections,
            mask_probs,
            mask_scores,
            output_canvas_shape(img_meta, rescale=True),
            img_meta['scale_factor'],
            clip_boxes=self.clip_boxes,
            mask_thr_binary=self.mask_thr_binary)
