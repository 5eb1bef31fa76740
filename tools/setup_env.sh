#!/usr/bin/env bash
# Set up (or refresh) the mmcentermask stack on a fresh Python 3.11 machine.
#
#   bash tools/setup_env.sh [--venv DIR] [--wheelhouse DIR]... [--python PY] [--no-project]
#
# Installs, in a virtualenv (created if missing, reused otherwise):
#   torch==2.13.0 (CPU build, never a CUDA build), setuptools>=77,<82, wheel, ninja,
#   mmcv==2.1.0 with its compiled ops, mmengine==0.10.7, mmdet==3.3.0, pycocotools,
#   and mmcentermask itself (editable, with its test extra: pytest, onnx, onnxruntime, onnxsim, hotcoco).
# mmcv has no wheel on PyPI: it is built from source once (about 35 min on 2 cores) and the
# wheel is cached in the build cache (default ~/.cache/mmcentermask/wheels, or $MMCM_WHEEL_CACHE),
# so the next run takes about a minute. Extra read-only wheelhouses given with --wheelhouse
# (or $MMCM_WHEELHOUSE, colon separated) are searched first.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${MMCM_VENV:-$repo/.venv}
python=${MMCM_PYTHON:-python3.11}
cache=${MMCM_WHEEL_CACHE:-$HOME/.cache/mmcentermask/wheels}
torch_cpu_index=${MMCM_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
install_project=1
IFS=: read -r -a wheelhouses <<< "${MMCM_WHEELHOUSE:-}"

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --venv) venv=$2; shift 2 ;;
    --wheelhouse) wheelhouses+=("$2"); shift 2 ;;
    --python) python=$2; shift 2 ;;
    --no-project) install_project=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "setup_env: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

log() { printf '[setup_env %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf '[setup_env] ERROR: %s\n' "$*" >&2; exit 1; }

command -v "$python" >/dev/null 2>&1 || python=python3
"$python" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null \
  || die "Python 3.11 is required ('$python' is $("$python" --version 2>&1)); pass --python PATH."

start=$(date +%s)
if [ ! -x "$venv/bin/python" ]; then
  log "creating virtualenv $venv"
  "$python" -m venv "$venv"
else
  log "reusing virtualenv $venv"
fi
py="$venv/bin/python"
pip() { "$py" -m pip --disable-pip-version-check "$@"; }

find_links=()
for wh in "${wheelhouses[@]}" "$cache"; do
  [ -n "$wh" ] && [ -d "$wh" ] && find_links+=(--find-links "$wh")
done

has_torch_cpu() {
  "$py" -c 'import torch, sys; sys.exit(not (torch.__version__.startswith("2.13.0") and torch.version.cuda is None))' 2>/dev/null
}

install_torch() {
  if has_torch_cpu; then log "torch 2.13.0 (CPU) already installed"; return; fi
  # Resolve first, download nothing: the PyPI torch 2.13.0 for Linux is a CUDA build of several GB.
  local report; report=$(mktemp)
  pip install --dry-run --quiet --ignore-installed --report "$report" "torch==2.13.0" >/dev/null
  if "$py" - "$report" <<'PY'
import json, sys
items = json.load(open(sys.argv[1]))['install']
torch = [i for i in items if i['metadata']['name'].lower() == 'torch'][0]
cuda = [i['metadata']['name'] for i in items if i['metadata']['name'].lower().startswith('nvidia')]
sys.exit(0 if '+cpu' in torch['metadata']['version'] and not cuda else 1)
PY
  then
    log "installing torch==2.13.0 (CPU build found locally)"
    pip install "torch==2.13.0"
  else
    log "installing torch==2.13.0+cpu from $torch_cpu_index"
    pip install "torch==2.13.0+cpu" --extra-index-url "$torch_cpu_index"
  fi
  rm -f "$report"
  has_torch_cpu || die "torch 2.13.0 CPU build did not install; set MMCM_TORCH_CPU_INDEX to a CPU wheel index."
}

install_mmcv() {
  if "$py" -c 'import mmcv, sys; from mmcv.ops import RoIAlign, nms; sys.exit(mmcv.__version__ != "2.1.0")' 2>/dev/null; then
    log "mmcv 2.1.0 with ops already installed"; return
  fi
  if pip install --no-index "${find_links[@]}" "mmcv==2.1.0" --no-deps >/dev/null 2>&1; then
    log "mmcv 2.1.0 installed from a cached wheel"
  else
    log "no mmcv 2.1.0 wheel found: building it from source (about 35 min on 2 cores)"
    mkdir -p "$cache"
    local t0; t0=$(date +%s)
    MAX_JOBS=${MAX_JOBS:-$(nproc)} pip wheel --no-deps --no-build-isolation -w "$cache" "mmcv==2.1.0"
    log "mmcv built in $(( ($(date +%s) - t0) / 60 )) min; wheel cached in $cache"
    pip install --no-index --find-links "$cache" --no-deps "mmcv==2.1.0"
  fi
  # mmcv's runtime requirements (addict, yapf, opencv-python, ...) from the registry.
  pip install "mmcv==2.1.0" "${find_links[@]}"
}

check_ops() {
  "$py" - <<'PY' || die "mmcv is installed without its compiled ops (mmcv._ext). Remove it (pip uninstall mmcv), delete any ops-less mmcv wheel from the wheel cache, and rerun: the build needs torch importable and --no-build-isolation."
import torch
from mmcv.ops import RoIAlign, nms
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]])
keep = nms(boxes, torch.tensor([0.9, 0.8]), 0.5)[1]
assert keep.tolist() == [0], keep
out = RoIAlign(2, 1.0, 0)(torch.ones(1, 1, 8, 8), torch.tensor([[0., 0., 0., 4., 4.]]))
assert out.shape == (1, 1, 2, 2)
PY
  log "mmcv.ops compiled ops work (RoIAlign, nms)"
}

log "installing build tools"
pip install "setuptools>=77,<82" wheel ninja psutil
install_torch
install_mmcv
check_ops
log "installing mmengine, mmdet, pycocotools"
pip install "mmengine==0.10.7" "mmdet==3.3.0" "pycocotools>=2.0.8" "setuptools>=77,<82"
if [ "$install_project" = 1 ]; then
  log "installing mmcentermask (editable, with tests extra)"
  pip install --no-build-isolation -e "$repo[tests]"
  "$py" -c 'import mmcentermask; print("mmcentermask", mmcentermask.__version__, "imports fine")'
fi
log "done in $(( $(date +%s) - start )) s; activate with: source $venv/bin/activate"
