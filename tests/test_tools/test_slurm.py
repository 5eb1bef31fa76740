"""tools/slurm_train.sh and slurm_test.sh on the CPU: a stand-in ``srun`` on
PATH starts the tasks as local processes with SLURM's variables, a stand-in
``scontrol`` names the master host; 2 processes train a tiny CenterMask for
2 iterations with gloo and evaluate the checkpoint."""
import os
import subprocess
import sys

import pytest

from repo_paths import REPO_ROOT
from test_centermask_e2e import clean_env, write_config

#: srun: records its arguments, skips its options and starts --ntasks copies
#: of the command with SLURM_PROCID / SLURM_LOCALID / SLURM_NTASKS /
#: SLURM_NODELIST set (one node); exits with the first failure's status
SRUN = r"""#!/usr/bin/env bash
printf '%s\n' "$@" >> "$SLURM_STAND_IN_LOG"
ntasks=1
while [ $# -gt 0 ]; do
  case $1 in
    -p) shift 2 ;;
    --ntasks=*) ntasks=${1#--ntasks=}; shift ;;
    --*) shift ;;
    *) break ;;
  esac
done
pids=()
for ((i = 0; i < ntasks; i++)); do
  SLURM_PROCID=$i SLURM_LOCALID=$i SLURM_NTASKS=$ntasks \
    SLURM_NODELIST='stand-in-node[1]' "$@" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=$?
done
exit $status
"""
#: scontrol: ``scontrol show hostname NODELIST`` -> the local host
SCONTROL = r"""#!/usr/bin/env bash
echo "scontrol $*" >> "$SLURM_STAND_IN_LOG"
echo 127.0.0.1
"""


def stand_in_env(tmp_path, log_name):
    """Environment with the stand-ins and this Python first on PATH."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir(exist_ok=True)
    for name, text in (('srun', SRUN), ('scontrol', SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {
        key: value
        for key, value in clean_env().items()
        if not key.startswith(('SLURM_', 'MASTER_')) and key not in (
            'RANK', 'WORLD_SIZE', 'LOCAL_RANK')
    }
    env.update(
        PATH=f'{bin_dir}:{os.path.dirname(sys.executable)}:{env["PATH"]}',
        MASTER_PORT=str(29600 + os.getpid() % 1000),
        SLURM_STAND_IN_LOG=str(tmp_path / log_name),
        GPUS='2',
        GPUS_PER_NODE='2',
        CPUS_PER_TASK='1')
    return env


def run_script(cmd, env):
    proc = subprocess.run(
        cmd,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_slurm_train_and_test(tiny_coco, tmp_path):
    config = write_config(tmp_path, tiny_coco)
    work_dir = tmp_path / 'work'

    env = stand_in_env(tmp_path, 'train_calls.txt')
    env.update(GRES='', SRUN_ARGS='--exclusive')  # CPU nodes: no --gres
    log = run_script(
        ['bash', 'tools/slurm_train.sh', 'cpu', 'tiny', config,
         str(work_dir)], env)
    calls = (tmp_path / 'train_calls.txt').read_text().splitlines()
    srun_args = calls[:calls.index('python')]
    assert srun_args == [
        '-p', 'cpu', '--job-name=tiny', '--ntasks=2', '--ntasks-per-node=2',
        '--cpus-per-task=1', '--kill-on-bad-exit=1', '--exclusive'
    ]
    assert calls[calls.index('python') + 1:][:4] == [
        '-u',
        os.path.join(REPO_ROOT, 'tools', 'train.py'), config,
        f'--work-dir={work_dir}'
    ]
    # both tasks asked scontrol for the master host of SLURM_NODELIST
    assert calls.count('scontrol show hostname stand-in-node[1]') == 2
    assert "dist_cfg: {'backend': 'gloo'}" in log
    assert 'Distributed training: True' in log
    assert 'GPU number: 2' in log  # mmengine's name for the world size
    for key in ('loss_mask', 'loss_mask_iou'):
        assert key in log, key
    assert (work_dir / 'iter_2.pth').is_file()

    env = stand_in_env(tmp_path, 'test_calls.txt')
    log = run_script([
        'bash', 'tools/slurm_test.sh', 'cpu', 'tiny-test', config,
        str(work_dir / 'iter_2.pth'), '--work-dir',
        str(tmp_path / 'test')
    ], env)
    calls = (tmp_path / 'test_calls.txt').read_text().splitlines()
    assert calls[:calls.index('python')] == [
        '-p', 'cpu', '--job-name=tiny-test', '--gres=gpu:2', '--ntasks=2',
        '--ntasks-per-node=2', '--cpus-per-task=1', '--kill-on-bad-exit=1'
    ]
    assert 'Distributed training: True' in log
    assert 'coco/bbox_mAP' in log and 'coco/segm_mAP' in log
