"""Run one of MMDetection's own command-line tools with mmcentermask loaded.

MMDetection ships its ``tools/`` inside the wheel (``mmdet/.mim/tools``). Our
``tools/train.py`` etc. import :mod:`mmcentermask` (registries, checkpoint
loading on torch >= 2.6) and then run MMDetection's script unchanged, so every
argument and behaviour is MMDetection's.
"""
import os
import os.path as osp
import runpy
import sys
from typing import List


def cpu_distributed_options(argv: List[str]) -> List[str]:
    """Options a distributed launch needs on a machine without CUDA.

    MMDetection's runtime config asks for nccl and MMEngine wraps the model
    in DDP with ``device_ids=[LOCAL_RANK]``; a CPU model needs gloo and
    ``device_ids=None``.

    Args:
        argv (list[str]): Command-line arguments after the script name.

    Returns:
        list[str]: ``argv`` with those settings merged into
        ``--cfg-options`` when ``--launcher`` is not ``none`` and CUDA is
        unavailable; unchanged otherwise.
    """
    import torch
    launcher = 'none'
    for i, arg in enumerate(argv):
        if arg == '--launcher' and i + 1 < len(argv):
            launcher = argv[i + 1]
        elif arg.startswith('--launcher='):
            launcher = arg.split('=', 1)[1]
    if launcher == 'none' or torch.cuda.is_available():
        return argv
    options = ['env_cfg.dist_cfg.backend=gloo',
               'model_wrapper_cfg.type=MMDistributedDataParallel',
               'model_wrapper_cfg.device_ids=None']
    if '--cfg-options' in argv:
        i = argv.index('--cfg-options')
        return argv[:i + 1] + options + argv[i + 1:]
    return argv + ['--cfg-options'] + options


def run_mmdet_tool(relative_path: str) -> None:
    """Execute ``mmdet/.mim/tools/<relative_path>`` as ``__main__``; after
    a distributed launch, destroy the process group and exit at once (see
    :func:`exit_without_teardown`).

    Args:
        relative_path (str): Script path below ``mmdet/.mim/tools``,
            e.g. ``'train.py'``.
    """
    repo_root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    if repo_root not in sys.path:
        sys.path.insert(0, repo_root)
    import mmdet

    import mmcentermask  # noqa: F401  (registers modules, checkpoint loader)
    script = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools', relative_path)
    if not osp.isfile(script):
        raise FileNotFoundError(
            f'MMDetection tool {script} not found: mmdet 3.3.0 installed from '
            'PyPI ships it; reinstall with `bash tools/setup_env.sh`.')
    sys.argv = [script] + cpu_distributed_options(sys.argv[1:])
    runpy.run_path(script, run_name='__main__')
    if destroy_process_group():
        exit_without_teardown()


def destroy_process_group() -> bool:
    """Shut the distributed process group down, as PyTorch asks before a
    program exits (MMEngine never does).

    Returns:
        bool: Whether there was one (a distributed launch).
    """
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        return False
    dist.destroy_process_group()
    return True


def exit_without_teardown() -> None:
    """Exit with status 0 after flushing the logs and streams, without the
    interpreter's teardown.

    After a distributed CPU (gloo) run had finished its work and destroyed
    its process group, rank 0 still aborted now and then in the
    interpreter's teardown ("terminate called without an active
    exception", exit code -6, about 1 run in 15-30 of the two-process test
    on 2026-12-02; in C++ teardown code outside this package, not
    identified), which failed the whole ``torchrun`` launch. Only called when the tool
    returned normally: errors still exit through the usual path.
    """
    import logging
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
