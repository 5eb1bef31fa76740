"""Keep freed CPU memory mapped in the process, so that the large tensors of
the next image reuse pages instead of page-faulting fresh ones.

glibc serves every allocation above its mmap threshold (at most 32 MiB) with
a fresh ``mmap`` and returns it with ``munmap`` on free. A float32 feature
map of CenterMask V2-39 at 800x1216 is 31-190 MiB, so each image maps its
big tensors anew and the kernel zero-fills every page the first time it is
written: about 200,000 page faults and 0.3-0.5 s of kernel time per image on
2 CPU threads (measured 2026-12-02, docs/benchmarks.md: "What the speed
comes from"). Smaller tensors live on the heap, whose top glibc gives back (trims) once 2x the
mmap threshold is free.

:func:`reuse_cpu_memory` turns both off with ``mallopt``: allocations come
from the heap and freed pages stay mapped for the next allocation. After
the first image the process holds its peak memory, as PyTorch's caching
allocator does on a GPU. Numbers are unchanged: only where tensors live
changes.
"""
import ctypes
import os
import platform

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
# Largest value mallopt takes (a C int): the heap top is given back only
# when 2 GiB of it are free.
NEVER_TRIM_BYTES = 2**31 - 1


def reuse_cpu_memory() -> bool:
    """Serve CPU allocations from the heap and keep freed pages mapped
    (process-wide; also for processes forked later, e.g. dataloader
    workers).

    Returns:
        bool: True if the C library is glibc and took both settings; False
        elsewhere (musl, macOS, Windows), where nothing is changed.
    """
    if os.name != 'posix' or platform.libc_ver()[0] != 'glibc':
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(
        mallopt(M_TRIM_THRESHOLD, NEVER_TRIM_BYTES))
