# mmcentermask in an MMDetection config: list this file after the MMDetection base, e.g.
#   _base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
#             '../_base_/plugins/mmcentermask.py']
# The import registers mmcentermask's modules in MMDetection's registries (unprefixed types).
# NonFiniteLossHook stops at the first NaN/inf loss, before a checkpoint is written;
# ReuseCPUMemoryHook keeps freed memory mapped on the CPU (mmcentermask/engine/hooks/).
# The crash-safe checkpoint hook cannot be set here: the MMDetection base sets
# `default_hooks` and two bases may not set the same key, so each config sets
#   default_hooks = dict(checkpoint=dict(type='CrashSafeCheckpointHook'))
custom_imports = dict(imports=['mmcentermask'], allow_failed_imports=False)
custom_hooks = [
    dict(type='NonFiniteLossHook'),
    dict(type='ReuseCPUMemoryHook')
]
