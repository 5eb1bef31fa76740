"""Let MMEngine 0.10.7 launch distributed jobs on machines without CUDA.

``mmengine.dist.utils._init_dist_pytorch`` calls ``torch.cuda.set_device``
unconditionally, which raises on a CPU-only torch build, and the default
``nccl`` backend needs GPUs. Without CUDA, importing :mod:`mmcentermask`
replaces that function by one that skips the device selection and uses
``gloo``. With CUDA nothing changes. The DDP wrapper's ``device_ids`` must be
``None`` for CPU modules: ``tools/train.py`` and ``tools/test.py`` add
``model_wrapper_cfg.device_ids=None`` to such launches.
"""
import torch
import torch.distributed as torch_dist
from mmengine.dist import utils as dist_utils
from mmengine.logging import print_log

_ORIGINAL = dist_utils._init_dist_pytorch


def _init_dist_pytorch_cpu(backend: str = 'gloo',
                           init_backend: str = 'torch',
                           **kwargs) -> None:
    """``_init_dist_pytorch`` for CPU-only machines: no device, gloo."""
    if init_backend != 'torch':
        return _ORIGINAL(backend, init_backend=init_backend, **kwargs)
    if backend != 'gloo':
        print_log(f'no CUDA device: distributed backend {backend} -> gloo',
                  logger='current')
    torch_dist.init_process_group(backend='gloo', **kwargs)


def patch_cpu_distributed() -> None:
    """Install :func:`_init_dist_pytorch_cpu` when CUDA is unavailable."""
    if not torch.cuda.is_available():
        dist_utils._init_dist_pytorch = _init_dist_pytorch_cpu
