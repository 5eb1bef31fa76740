"""Checkpoint converters: the authors' centermask2 and maskrcnn-benchmark
detectors and the VoVNet ImageNet backbones (centermask2, maskrcnn-benchmark,
timm) onto mmcentermask's models.

:mod:`.engine` maps keys with part tables (:class:`Part`) into one result
type (:class:`Conversion`) or one error (:class:`ConversionError`);
:mod:`.key_tables` holds the key tables; :mod:`.checkpoint_io` reads and
writes files; :mod:`.centermask2`, :mod:`.maskrcnn_benchmark` and
:mod:`.vovnet` are the source formats; :mod:`.cli` is the command line of
the full-model converters.
"""
from .centermask2 import convert_centermask2
from .checkpoint_io import (COCO_CLASSES, build_target_model,
                            load_source_state_dict, save_mmengine_checkpoint)
from .engine import Conversion, ConversionError, Part, fold_frozen_bn_eps
from .maskrcnn_benchmark import convert_maskrcnn_benchmark
from .vovnet import (convert_centermask2_vovnet,
                     convert_maskrcnn_benchmark_vovnet, convert_timm_vovnet,
                     convert_vovnet_state_dict, detect_vovnet_format)

__all__ = [
    'COCO_CLASSES', 'Conversion', 'ConversionError', 'Part',
    'build_target_model', 'convert_centermask2',
    'convert_centermask2_vovnet', 'convert_maskrcnn_benchmark',
    'convert_maskrcnn_benchmark_vovnet', 'convert_timm_vovnet',
    'convert_vovnet_state_dict', 'detect_vovnet_format', 'fold_frozen_bn_eps',
    'load_source_state_dict', 'save_mmengine_checkpoint'
]
