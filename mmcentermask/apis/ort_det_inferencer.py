"""MMDetection's ``DetInferencer`` on an exported model run by ONNX Runtime.

Everything around the network is the inferencer's own: the config's test
pipeline, collation, the visualizer (class names, palette, masks, boxes and
scores drawn as for the PyTorch model), file naming and the prediction JSON
files. Only the model is replaced: :class:`ONNXRuntimeModel` gives
:class:`~mmcentermask.deploy.ONNXRuntimeCenterMask` the ``test_step`` that
the inferencer calls. Importing this module needs ``onnxruntime``.
"""
import copy
from typing import List, Optional

from mmdet.apis import DetInferencer
from mmdet.registry import DATASETS
from mmdet.structures import DetDataSample
from mmdet.utils import ConfigType
from torch import nn

from ..deploy import ONNXRuntimeCenterMask


class ONNXRuntimeModel(nn.Module):
    """An ONNX Runtime session seen by MMEngine as a model in eval mode.

    Args:
        runner (:obj:`ONNXRuntimeCenterMask`): The session and its host-side
            pre- and post-processing.
    """

    def __init__(self, runner: ONNXRuntimeCenterMask) -> None:
        super().__init__()
        self.runner = runner
        self.dataset_meta: dict = {}

    def test_step(self, data: dict) -> List[DetDataSample]:
        """Detect and segment a collated batch of the test pipeline.

        Args:
            data (dict): ``inputs`` (list of (3, H, W) uint8 tensors) and
                ``data_samples``.

        Returns:
            list[:obj:`DetDataSample`]: ``pred_instances`` in pixels of the
            original images (see :meth:`ONNXRuntimeCenterMask.predict`).
        """
        return self.runner.predict(data)


class ONNXRuntimeDetInferencer(DetInferencer):
    """``DetInferencer`` whose model is an exported ``.onnx`` file.

    Class names and palette come from the config's test dataset (its
    ``metainfo``), as the PyTorch inferencer takes them when the checkpoint
    has none; ONNX Runtime runs on the CPU.

    Args:
        model (str): The config the model was exported from.
        weights (str): The ``.onnx`` file written by
            ``tools/deployment/pytorch2onnx.py``.
        device (str): Must be ``'cpu'`` (the CPU execution provider).
            Defaults to ``'cpu'``.
        palette (str): As for ``DetInferencer``. Defaults to ``'none'``
            (the dataset's palette, else random colours).
        show_progress (bool): Show a progress bar. Defaults to True.
    """

    def __init__(self,
                 model: str,
                 weights: str,
                 device: str = 'cpu',
                 palette: str = 'none',
                 show_progress: bool = True) -> None:
        if device != 'cpu':
            raise ValueError(
                f'the ONNX Runtime backend runs on the CPU, got device '
                f'{device!r}; pass --device cpu (or run the PyTorch '
                'checkpoint on that device)')
        super().__init__(
            model=model,
            weights=weights,
            device=device,
            palette=palette,
            show_progress=show_progress)

    def _init_model(self, cfg: ConfigType, weights: Optional[str],
                    device: str) -> nn.Module:
        """An :class:`ONNXRuntimeModel` on ``weights`` (the .onnx file)."""
        if not weights:
            raise ValueError(
                'the ONNX Runtime backend needs the exported .onnx file as '
                'weights; export one with tools/deployment/pytorch2onnx.py')
        model = ONNXRuntimeModel(ONNXRuntimeCenterMask(cfg, weights))
        model.cfg = cfg
        self._load_weights_to_model(model, None, cfg)
        return model

    def _load_weights_to_model(self, model: nn.Module,
                               checkpoint: Optional[dict],
                               cfg: ConfigType) -> None:
        """Class names and palette of the config's test dataset (the weights
        are in the session already)."""
        dataset_cfg = copy.deepcopy(cfg.test_dataloader.dataset)
        dataset_cfg['lazy_init'] = True  # only the metainfo is needed
        model.dataset_meta = dict(DATASETS.build(dataset_cfg).metainfo)
        if self.palette != 'none':
            model.dataset_meta['palette'] = self.palette
        model.dataset_meta.setdefault('palette', 'random')
