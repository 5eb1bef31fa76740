"""Let MMEngine 0.10.7 launch distributed jobs on machines without CUDA.

``mmengine.dist.utils._init_dist_pytorch`` and ``_init_dist_slurm`` call
``torch.cuda.set_device`` unconditionally, which raises on a CPU-only torch
build, and the default ``nccl`` backend needs GPUs. Without CUDA, importing
:mod:`mmcentermask` replaces both by functions that skip the device
selection and use ``gloo`` (``--launcher pytorch`` and ``--launcher
slurm``). With CUDA nothing changes. The DDP wrapper's ``device_ids`` must be
``None`` for CPU modules: ``tools/train.py`` and ``tools/test.py`` add
``model_wrapper_cfg.device_ids=None`` to such launches.
"""
import os
import subprocess
from typing import Optional

import torch
import torch.distributed as torch_dist
from mmengine.dist import utils as dist_utils
from mmengine.logging import print_log

_ORIGINAL = dist_utils._init_dist_pytorch
_ORIGINAL_SLURM = dist_utils._init_dist_slurm


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


def _init_dist_slurm_cpu(backend: str = 'gloo',
                         port: Optional[int] = None,
                         init_backend: str = 'torch',
                         **kwargs) -> None:
    """``_init_dist_slurm`` for CPU-only machines: no device, gloo.

    Sets the variables torch's ``env://`` rendezvous reads from SLURM's as
    MMEngine does: ``RANK`` = ``SLURM_PROCID``, ``WORLD_SIZE`` =
    ``SLURM_NTASKS``, ``LOCAL_RANK`` = ``SLURM_LOCALID`` (else the rank),
    ``MASTER_ADDR`` = the first host of ``SLURM_NODELIST`` (``scontrol show
    hostname``) unless already set, ``MASTER_PORT`` = ``port``, else the
    environment's, else 29500.
    """
    if init_backend != 'torch':
        return _ORIGINAL_SLURM(
            backend, port=port, init_backend=init_backend, **kwargs)
    rank = os.environ['SLURM_PROCID']
    if 'MASTER_ADDR' not in os.environ:
        node_list = os.environ['SLURM_NODELIST']
        os.environ['MASTER_ADDR'] = subprocess.getoutput(
            f'scontrol show hostname {node_list} | head -n1')
    if port is not None:
        os.environ['MASTER_PORT'] = str(port)
    os.environ.setdefault('MASTER_PORT', '29500')
    os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
    os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', rank)
    os.environ['RANK'] = rank
    _init_dist_pytorch_cpu(backend, **kwargs)


def patch_cpu_distributed() -> None:
    """Install :func:`_init_dist_pytorch_cpu` and
    :func:`_init_dist_slurm_cpu` when CUDA is unavailable."""
    if not torch.cuda.is_available():
        dist_utils._init_dist_pytorch = _init_dist_pytorch_cpu
        dist_utils._init_dist_slurm = _init_dist_slurm_cpu
