#!/usr/bin/env bash
# Quick start, from nothing to pictures of predictions:
#   1. set up the stack (tools/setup_env.sh; extra arguments are passed to it),
#   2. make the bundled shapes dataset (data/shapes),
#   3. train CenterMask-Lite V2-19-slim-dw on it on the CPU,
#   4. evaluate bbox and segm AP on the val split (COCO metric table),
#   5. draw the predictions for a few val images.
#
#   bash tools/quick_start.sh [setup_env.sh options]
#
# Environment: QS_WORK_DIR (default work_dirs/quick_start), QS_ITERS (training iterations,
# default: the config's), QS_NUM_VIS (pictures to draw, default 8).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
config=configs/centermask/centermask-lite_vovnet-v2-19-slim-dw_fpn-64_1xb8-1600i_shapes.py
work_dir=${QS_WORK_DIR:-work_dirs/quick_start}
num_vis=${QS_NUM_VIS:-8}
start=$(date +%s)

bash tools/setup_env.sh "$@"
py=.venv/bin/python
setup_done=$(date +%s)

if [ ! -f data/shapes/annotations/val.json ]; then
  "$py" tools/dataset_converters/make_shapes_dataset.py --out data/shapes
fi

iters=()
if [ -n "${QS_ITERS:-}" ]; then
  iters=(--cfg-options "train_cfg.max_iters=$QS_ITERS" "train_cfg.val_interval=$QS_ITERS")
fi
"$py" tools/train.py "$config" --work-dir "$work_dir" "${iters[@]}"
ckpt="$work_dir/$(basename "$(cat "$work_dir/last_checkpoint")")"

"$py" tools/test.py "$config" "$ckpt" --work-dir "$work_dir/test" 2>&1 \
  | tee "$work_dir/test.log" | grep -E "Average (Precision|Recall)|Evaluating|coco/" || true

vis_in="$work_dir/vis_inputs"
rm -rf "$vis_in" && mkdir -p "$vis_in"
ls data/shapes/val/*.png | head -n "$num_vis" | xargs -I{} cp {} "$vis_in/"
"$py" tools/demo.py "$vis_in" "$config" "$ckpt" --out-dir "$work_dir/demo" --score-thr 0.3

end=$(date +%s)
echo
echo "quick start finished: setup $((setup_done - start)) s, data + train + test + pictures $((end - setup_done)) s"
grep -E "coco/segm_mAP|coco/bbox_mAP" "$work_dir/test.log" | tail -1 || true
echo "checkpoint: $ckpt"
echo "pictures of the predictions: $work_dir/demo/vis"
