"""The CPU kernels a test run asked for are the ones torch uses, so that
CI's second run of the ``numerics`` tests (``ATEN_CPU_CAPABILITY=avx2
ONEDNN_MAX_CPU_ISA=AVX2``) really exercises other kernels."""
import os
import subprocess
import sys

import pytest
import torch

#: ``ATEN_CPU_CAPABILITY`` values and what torch then reports
CAPABILITIES = {'default': 'DEFAULT', 'avx2': 'AVX2', 'avx512': 'AVX512'}
#: ``ONEDNN_MAX_CPU_ISA`` values and how oneDNN's verbose line names them
ONEDNN_ISAS = {'SSE41': 'SSE4.1', 'AVX': 'Intel AVX', 'AVX2': 'Intel AVX2'}


def test_requested_aten_kernels_are_used():
    requested = os.environ.get('ATEN_CPU_CAPABILITY')
    if requested is None:
        pytest.skip('ATEN_CPU_CAPABILITY is not set: torch picks the best '
                    'kernels of this CPU')
    assert torch.backends.cpu.get_cpu_capability() == CAPABILITIES[
        requested.lower()]


def test_requested_onednn_isa_is_used():
    """oneDNN names the instruction set it runs with (ONEDNN_VERBOSE) on
    its first channels-last convolution."""
    requested = os.environ.get('ONEDNN_MAX_CPU_ISA')
    if requested is None:
        pytest.skip('ONEDNN_MAX_CPU_ISA is not set: oneDNN picks the best '
                    'instruction set of this CPU')
    script = ('import torch\n'
              'x = torch.randn(1, 64, 32, 32).contiguous('
              'memory_format=torch.channels_last)\n'
              'torch.nn.Conv2d(64, 64, 3, padding=1).to('
              'memory_format=torch.channels_last)(x)\n')
    result = subprocess.run([sys.executable, '-c', script],
                            env=dict(os.environ, ONEDNN_VERBOSE='1'),
                            capture_output=True,
                            text=True,
                            check=True)
    isa = [line for line in result.stdout.splitlines() if ',isa:' in line]
    assert isa, result.stdout[-2000:]
    assert ONEDNN_ISAS[requested.upper()] in isa[0]
