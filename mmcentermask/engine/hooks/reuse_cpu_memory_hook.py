"""Keep freed CPU memory mapped for the whole run of a CPU model."""
from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.logging import print_log

from mmcentermask.utils.cpu_memory import reuse_cpu_memory


@HOOKS.register_module()
class ReuseCPUMemoryHook(Hook):
    """Before the run, when the model is on the CPU, serve allocations from
    the heap and keep freed pages mapped
    (:func:`~mmcentermask.utils.cpu_memory.reuse_cpu_memory`): the large
    feature maps of each image or batch then reuse the pages of the last
    one instead of page-faulting fresh ones.

    Measured on 2 CPU threads (docs/benchmarks.md, "What the speed comes
    from"): CenterMask V2-39 at 800x1216 lost about 200,000 page faults and
    9-13% of its inference time per image, CenterMask-Lite at 600x900 20%;
    the shapes quick start's training step about 1% (its tensors are below
    glibc's 32 MiB mmap threshold, so glibc already kept most of them). Outputs are bitwise
    the same. The process keeps its peak memory after the first iteration.
    Does nothing for a model on a GPU or with a C library other than glibc.
    """

    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        param = next(runner.model.parameters(), None)
        if param is not None and param.device.type != 'cpu':
            return
        applied = reuse_cpu_memory()
        print_log(
            'ReuseCPUMemoryHook: freed CPU memory stays mapped'
            if applied else 'ReuseCPUMemoryHook: not applied (needs glibc); '
            'CPU allocations are left as they are',
            logger='current')
