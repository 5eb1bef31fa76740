#!/usr/bin/env bash
# Testing on a SLURM cluster, as MMDetection's tools/slurm_test.sh:
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS=...] \
#     bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]
# srun starts GPUS tasks (GPUS_PER_NODE per node), each runs tools/test.py with
# --launcher slurm. GRES (default gpu:$GPUS_PER_NODE) is srun's --gres; GRES= (empty)
# leaves it out, for CPU-only nodes, where the tasks use gloo.

set -x

PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
GRES=${GRES-gpu:${GPUS_PER_NODE}}
PY_ARGS=${@:5}
SRUN_ARGS=${SRUN_ARGS:-""}
dir=$(cd "$(dirname "$0")" && pwd)

PYTHONPATH="$dir/..":$PYTHONPATH \
srun -p ${PARTITION} \
    --job-name=${JOB_NAME} \
    ${GRES:+--gres=${GRES}} \
    --ntasks=${GPUS} \
    --ntasks-per-node=${GPUS_PER_NODE} \
    --cpus-per-task=${CPUS_PER_TASK} \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    python -u "$dir/test.py" ${CONFIG} ${CHECKPOINT} --launcher="slurm" ${PY_ARGS}
