#!/usr/bin/env bash
# The GPU check of issue #12, one script for a lent CUDA device (estimated 5 min on one H200, not
# run yet; never more than GPU_CHECK_BUDGET_S, default 460 s, in all):
#   1. environment: torch, CUDA device, mmcv's compiled ops on the device;
#   2. benchmark_centermask.py on CUDA, CenterMask-Lite V2-19-slim-dw (600x1000) and
#      CenterMask V2-39 (800x1333) against Mask R-CNN with the same backbone, candidates and
#      final masks: per-stage latency (CUDA events, median and min of 20 runs after 5), ATen
#      ops and host syncs; first the realistic scenario (converted golden weights), then the
#      worst case (random weights, CenterMask score threshold 0);
#   3. the quick-start config trained for 50 iterations with --amp (AmpOptimWrapper, float16)
#      on the bundled shapes set, then every logged loss checked finite;
#   4. inference of that checkpoint under float16 and bfloat16 autocast against float32 at
#      800x1333 (check_mixed_precision.py): finite outputs, agreement, latency.
# Each part runs under `timeout` and the script goes on when one fails; it ends with a summary
# (also in $OUT/summary.txt) and exits 1 if a part failed.
#
#   bash tools/analysis_tools/gpu_check.sh          # on the CUDA device
#   bash tools/analysis_tools/gpu_check.sh --cpu    # tiny version of every part on the CPU
#
# --cpu checks the script itself: small sizes, 1 timed run, 2 training iterations without --amp
# (MMEngine's AmpOptimWrapper needs CUDA), CPU autocast; its numbers are not GPU figures.
# Environment: OUT (output folder, default ./gpu_check_out), PYTHON (default .venv/bin/python
# when present, else python; on the device it needs CUDA builds of torch and mmcv),
# GPU_CHECK_BUDGET_S.
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"

mode=cuda
case ${1:-} in
  --cpu) mode=cpu ;;
  '') ;;
  *) echo "usage: bash $0 [--cpu]" >&2; exit 2 ;;
esac
OUT=${OUT:-./gpu_check_out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python
  [ -x .venv/bin/python ] && PYTHON=.venv/bin/python
fi
deadline=$(($(date +%s) + ${GPU_CHECK_BUDGET_S:-460}))
config=configs/centermask/centermask-lite_vovnet-v2-19-slim-dw_fpn-64_1xb8-1600i_shapes.py
data=$OUT/data/shapes
summary=()
failed=0

# part NAME LIMIT_S COMMAND...: runs COMMAND under timeout (LIMIT_S, or what is left of the
# budget), output in $OUT/NAME.log, one summary line
part() {
  local name=$1 limit=$2 log=$OUT/$1.log
  shift 2
  local left=$((deadline - $(date +%s)))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -le 5 ]; then
    summary+=("$name: SKIPPED (budget spent)")
    failed=1
    return
  fi
  echo "== $name (limit ${limit} s): $*" | tee "$log"
  local start rc status
  start=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >> "$log" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    124 | 137) status="TIMEOUT after ${limit} s"; failed=1 ;;
    *) status="FAILED (exit $rc)"; failed=1 ;;
  esac
  tail -n 25 "$log"
  summary+=("$name: $status, $(($(date +%s) - start)) s, log $log")
}

if [ "$mode" = cuda ]; then
  bench=(--device cuda --models centermask-lite_v2-19-slim-dw centermask_v2-39 --warmup 5
         --repeat 20)
  golden=("${bench[@]}")
  data_args=()
  train_args=(--amp --cfg-options train_cfg.max_iters=50 train_cfg.val_interval=50
              default_hooks.logger.interval=5 default_hooks.checkpoint.interval=50)
  iters=50
  infer=(--device cuda --num-images 8 --repeat 3
         --cfg-options 'test_dataloader.dataset.pipeline.1.scale=(1333,800)')
else
  bench=(--device cpu --models centermask-lite_v2-19-slim-dw --size 128x192 --warmup 0
         --repeat 1 --threads 2)
  golden=()  # the golden image is 600x1000: too slow for a dry run on 2 cores
  data_args=(--num-train 8 --num-val 2)
  train_args=(--cfg-options train_cfg.max_iters=2 train_cfg.val_interval=2
              default_hooks.logger.interval=1 default_hooks.checkpoint.interval=2
              train_dataloader.batch_size=2 val_dataloader.batch_size=2
              test_dataloader.batch_size=2)
  iters=2
  infer=(--device cpu --num-images 2 --repeat 1 --cfg-options)
fi
# every candidate kept (50 detections per image) even after a short training
infer+=(model.test_cfg.fcos.score_thr=0.0)
for loader in train val test; do
  train_args+=("${loader}_dataloader.dataset.data_root=$data/")
done
train_args+=("val_evaluator.ann_file=$data/annotations/val.json"
             "test_evaluator.ann_file=$data/annotations/val.json")

part environment 60 "$PYTHON" - "$mode" <<'EOF'
import sys
import torch
import mmcv
from mmcv.ops import nms
device = sys.argv[1]
print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'mmcv', mmcv.__version__)
if device == 'cuda':
    print('device:', torch.cuda.get_device_name(), torch.cuda.get_device_capability())
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]], device=device)
print('mmcv nms on', device, nms(boxes, torch.tensor([0.9, 0.8], device=device), 0.5)[1])
EOF
if [ "$mode" = cuda ]; then
  command -v nvidia-smi > /dev/null && nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
  part benchmark_realistic 150 "$PYTHON" tools/analysis_tools/benchmark_centermask.py \
    "${golden[@]}" --scenarios realistic
fi
part benchmark_worst_case 150 "$PYTHON" tools/analysis_tools/benchmark_centermask.py "${bench[@]}" \
  --scenarios worst-case
part shapes_data 60 "$PYTHON" tools/dataset_converters/make_shapes_dataset.py --out "$data" \
  "${data_args[@]}"
part train 180 "$PYTHON" tools/train.py "$config" --work-dir "$OUT/train" "${train_args[@]}"
part train_losses_finite 30 "$PYTHON" - "$OUT/train" "$iters" "$mode" <<'EOF'
import glob, json, math, sys
work_dir, iters, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
logs = sorted(glob.glob(f'{work_dir}/*/vis_data/scalars.json'))
records = [json.loads(line) for line in open(logs[-1])]
train = [r for r in records if 'loss' in r]
for r in train:
    print({k: v for k, v in r.items() if k.startswith('loss') or k in ('iter', 'lr')})
bad = [(r['iter'], k, v) for r in train for k, v in r.items()
       if k.startswith('loss') and not math.isfinite(v)]
assert not bad, f'non-finite losses: {bad}'
assert train and train[-1]['iter'] == iters, f'last logged iteration {train[-1:]}, expected {iters}'
dump = open(glob.glob(f'{work_dir}/*.py')[0]).read()
amp = "type='AmpOptimWrapper'" in dump
print(f'{len(train)} logged iterations, all losses finite; AmpOptimWrapper: {amp}')
assert amp == (mode == 'cuda'), 'AmpOptimWrapper expected exactly on CUDA (--amp)'
EOF
checkpoint=$OUT/train/iter_$iters.pth
part mixed_precision_inference 120 "$PYTHON" tools/analysis_tools/check_mixed_precision.py \
  "$config" --checkpoint "$checkpoint" --images "$data/val" "${infer[@]}"

{
  echo "gpu_check ($mode) finished $(date -u '+%Y-%m-%d %H:%M UTC'); outputs in $OUT"
  printf '  %s\n' "${summary[@]}"
} | tee "$OUT/summary.txt"
exit $failed
