"""reuse_cpu_memory: large tensors reuse mapped pages instead of
page-faulting fresh ones (checked in fresh processes: the setting is
process-wide); other C libraries are left alone."""
import platform
import subprocess
import sys

import pytest

from mmcentermask.utils import cpu_memory

# Page faults of filling a fresh 64 MiB tensor, six times (16,384 pages of
# 4 KiB each, above glibc's largest mmap threshold of 32 MiB).
SCRIPT = r'''
import resource, sys
import torch
from mmcentermask.utils.cpu_memory import reuse_cpu_memory
if sys.argv[1] == 'reuse':
    assert reuse_cpu_memory()
faults = []
for _ in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    tensor = torch.ones(64 * 2**20 // 4)
    del tensor
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(*faults)
'''


def page_faults(mode: str) -> list:
    proc = subprocess.run([sys.executable, '-c', SCRIPT, mode],
                          capture_output=True,
                          text=True,
                          check=True)
    return [int(v) for v in proc.stdout.split()]


@pytest.mark.skipif(
    platform.libc_ver()[0] != 'glibc',
    reason='reuse_cpu_memory changes glibc malloc only')
def test_later_allocations_reuse_the_freed_pages():
    fresh = page_faults('default')
    reused = page_faults('reuse')
    # the first allocation maps its pages in both processes
    assert reused[0] > 1000, reused
    # by default every allocation page-faults again; after reuse_cpu_memory
    # the heap settles within two (the aligned request does not fit the
    # first freed chunk) and later ones fault no page
    steady = reused[3:]
    assert max(steady) < 100, (fresh, reused)
    assert min(fresh[3:]) > 10 * max(max(steady), 1), (fresh, reused)


def test_other_c_libraries_are_left_alone(monkeypatch):
    """musl, macOS, Windows: nothing is called, the answer is False."""
    monkeypatch.setattr(cpu_memory.platform, 'libc_ver', lambda: ('', ''))
    monkeypatch.setattr(cpu_memory.ctypes, 'CDLL', None)  # must not be used
    assert cpu_memory.reuse_cpu_memory() is False
