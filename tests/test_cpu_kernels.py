"""The CPU kernels asked for through the environment are the ones torch
uses, so that CI's second run of the ``numerics`` tests
(``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``) really exercises other
kernels than the first. Each check runs in a fresh process (both settings
are read once, when torch starts) with this run's setting, or AVX2 when the
run has none."""
import os
import subprocess
import sys

#: ``ATEN_CPU_CAPABILITY`` values and what torch then reports
CAPABILITIES = {'default': 'DEFAULT', 'avx2': 'AVX2', 'avx512': 'AVX512'}
#: ``ONEDNN_MAX_CPU_ISA`` values and how oneDNN's verbose line names them
ONEDNN_ISAS = {'SSE41': 'SSE4.1', 'AVX': 'Intel AVX', 'AVX2': 'Intel AVX2'}


def run_python(script: str, **env: str) -> str:
    """stdout of ``script`` in a new interpreter with ``env`` added."""
    return subprocess.run([sys.executable, '-c', script],
                          env=dict(os.environ, **env),
                          capture_output=True,
                          text=True,
                          check=True).stdout


def test_aten_kernels_follow_the_environment():
    requested = os.environ.get('ATEN_CPU_CAPABILITY', 'avx2')
    reported = run_python(
        'import torch; print(torch.backends.cpu.get_cpu_capability())',
        ATEN_CPU_CAPABILITY=requested)
    assert reported.strip() == CAPABILITIES[requested.lower()]


def test_onednn_isa_follows_the_environment():
    """oneDNN names the instruction set it runs with (ONEDNN_VERBOSE) on
    its first channels-last convolution."""
    requested = os.environ.get('ONEDNN_MAX_CPU_ISA', 'AVX2')
    script = ('import torch\n'
              'x = torch.randn(1, 64, 32, 32).contiguous('
              'memory_format=torch.channels_last)\n'
              'torch.nn.Conv2d(64, 64, 3, padding=1).to('
              'memory_format=torch.channels_last)(x)\n')
    output = run_python(
        script, ONEDNN_MAX_CPU_ISA=requested, ONEDNN_VERBOSE='1')
    isa = [line for line in output.splitlines() if ',isa:' in line]
    assert isa, output[-2000:]
    assert ONEDNN_ISAS[requested.upper()] in isa[0]
