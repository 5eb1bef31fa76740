#!/usr/bin/env bash
# Multi-process training: tools/dist_train.sh CONFIG NUM_PROCESSES [train.py args...]
# Uses torchrun; without CUDA, the processes use gloo on the CPU.
set -euo pipefail
CONFIG=$1
NPROC=$2
shift 2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
dir=$(cd "$(dirname "$0")" && pwd)
PYTHONPATH="$dir/..:${PYTHONPATH:-}" \
python -m torch.distributed.run --nnodes="$NNODES" --node_rank="$NODE_RANK" \
  --master_addr="$MASTER_ADDR" --nproc_per_node="$NPROC" --master_port="$PORT" \
  "$dir/train.py" "$CONFIG" --launcher pytorch "$@"
