"""tools/analysis_tools/check_mixed_precision.py on the CPU (autocast to
float16 and bfloat16 against float32) and the command line of
tools/analysis_tools/gpu_check.sh (its parts need CUDA; ``--cpu`` runs them
small, by hand: about 2 minutes)."""
import subprocess
import sys

from repo_paths import REPO_ROOT
from test_centermask_e2e import clean_env, write_config

TOOL = 'tools/analysis_tools/check_mixed_precision.py'
GPU_CHECK = 'tools/analysis_tools/gpu_check.sh'


def test_autocast_inference_against_float32(tiny_coco, tmp_path):
    config = write_config(tmp_path, tiny_coco)
    proc = subprocess.run([
        sys.executable, TOOL, config, '--images',
        str(tiny_coco / 'val'), '--device', 'cpu', '--repeat', '1',
        '--num-images', '2'
    ],
                          cwd=REPO_ROOT,
                          env=clean_env(),
                          capture_output=True,
                          text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith('2 images, device cpu (cpu)'), lines
    assert lines[1].startswith('float32: '), lines
    for line, dtype in zip(lines[2:], ('float16', 'bfloat16')):
        assert line.startswith(f'{dtype}: ok;'), lines
        assert 'all finite: True' in line, line


def test_gpu_check_command_line():
    assert subprocess.run(['bash', '-n', GPU_CHECK],
                          cwd=REPO_ROOT).returncode == 0
    proc = subprocess.run(['bash', GPU_CHECK, '--fast'],
                          cwd=REPO_ROOT,
                          capture_output=True,
                          text=True)
    assert proc.returncode == 2
    assert 'usage:' in proc.stderr
