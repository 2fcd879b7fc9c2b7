#!/usr/bin/env bash
# Every benchmark of benchmarks/ with GPU-sized settings, in about 5 minutes on one H100/H200.
#
#   OUT=/some/folder SIMCLR_DATA=/path/with/cifar10 bash benchmarks/gpu_all.sh
#
# OUT: where the results JSON files and gpu_all.log go (default benchmarks/results); 7 files.
# SIMCLR_DATA: a folder with cifar10/train.tar.gz and test.tar.gz; default: data/ when
#   data/cifar10/train.tar.gz exists (git-ignored; carry it to the GPU machine); without either the
#   benchmarks use random uint8 images of CIFAR-10's shape and say so in the JSON.
# Wheels of the benchmark-only dependencies (lightly, kornia and theirs) are installed from
# .whl/ when present (no internet needed); without them, bench_loss / bench_train_step use a
# copy of lightly's NTXentLoss and torchvision transforms, and kornia's row is skipped.
# BENCH_QUICK=1 runs everything with tiny settings (a syntax check; also works without a GPU).
set -uo pipefail
cd "$(dirname "$0")/.."
export OUT="${OUT:-benchmarks/results}"
mkdir -p "$OUT"

main() {
if [ -z "${SIMCLR_DATA:-}" ] && [ -f data/cifar10/train.tar.gz ]; then export SIMCLR_DATA="$PWD/data"; fi
echo "[gpu_all] SIMCLR_DATA=${SIMCLR_DATA:-<unset: random data>} OUT=$OUT"
PY="${PYTHON:-python3}"
T0=$(date +%s)

if ls .whl/*.whl >/dev/null 2>&1; then
  # the pure-Python wheels plus the binary ones built for this Python; packaging / typing_extensions
  # only where missing (never shadow the installed ones)
  TAG=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
  WHEELS=()
  for w in .whl/*.whl; do
    b=$(basename "$w")
    case "$b" in
      packaging-*|typing_extensions-*) "$PY" -c "import ${b%%-*}" 2>/dev/null && continue ;;
    esac
    case "$b" in *-py3-none-any.whl|*-"$TAG"-*) WHEELS+=("$w") ;; esac
  done
  "$PY" -m pip install -q --no-index --no-deps --upgrade --target /tmp/site "${WHEELS[@]}" \
    || echo "[gpu_all] installing the wheels failed: lightly / kornia rows may be missing"
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

"$PY" - <<'EOF'
import torch, importlib
print(f"[gpu_all] torch {torch.__version__}, cuda available: {torch.cuda.is_available()}"
      + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
for m in ("lightly.loss", "lightly.transforms", "kornia.augmentation"):
    try:
        importlib.import_module(m); print(f"[gpu_all] {m}: ok")
    except Exception as e:
        print(f"[gpu_all] {m}: NOT importable ({type(e).__name__}: {e})")
EOF

DEV=cuda; EXTRA=()
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
  || { DEV=cpu; EXTRA=(--force-epoch --no-compile); echo "[gpu_all] no GPU: running on the CPU"; }

FAILED=()
run() {  # run NAME TIMEOUT_S ARGS...: one benchmark, bounded in time, failures recorded
  local name=$1 limit=$2; shift 2
  echo; echo "=== $name ($(( $(date +%s) - T0 )) s elapsed) ==="
  timeout --signal=TERM --kill-after=10 "$limit" "$PY" "$@" || { echo "[gpu_all] $name FAILED or timed out (rc=$?)"; FAILED+=("$name"); }
}

# decode CIFAR-10 once (cached for the other scripts); a no-op without SIMCLR_DATA
if [ -n "${SIMCLR_DATA:-}" ]; then
  timeout 180 "$PY" -c "
import sys; sys.path.insert(0, '.')
from simclr_lite.data import load_dataset
for train in (True, False):
    x, y, _ = load_dataset(None, train, size=32); print('[gpu_all] CIFAR-10', 'train' if train else 'test', tuple(x.shape))
" || { echo "[gpu_all] CIFAR-10 decode failed: the benchmarks use random data"; unset SIMCLR_DATA; }
fi

# expected on an H100 with 16 cores: ~60 + 20 + 20 + 10 + 180 s. The limits (540 s in all) only stop a
# hang inside a 600 s device call; every script writes its JSON as soon as it has figures, and
# bench_train_step.py again after each full-epoch run.
LIM=1; [ "$DEV" = cpu ] && LIM=3   # the CPU fallback (a syntax check) is slower
run augment     $((120 * LIM)) benchmarks/bench_augment.py --device $DEV
run loss        $((90 * LIM)) benchmarks/bench_loss.py --device $DEV
run knn_cpu     $((60 * LIM)) benchmarks/bench_knn.py --device cpu
run knn_gpu     $((30 * LIM)) benchmarks/bench_knn.py --device $DEV
run train_step  $((240 * LIM)) benchmarks/bench_train_step.py --device $DEV ${EXTRA[@]+"${EXTRA[@]}"}
# the ImageNet pipeline: JPEG files decoded by 8 DataLoader workers, ResNet-50 at 224 px, one GPU
run stream      $((150 * LIM)) benchmarks/bench_distributed.py --device $DEV --loader stream --workers 8 --nproc 1

echo; echo "=== summary ($(( $(date +%s) - T0 )) s in all; results in $OUT) ==="
"$PY" benchmarks/summarize.py "$OUT"
if [ ${#FAILED[@]} -gt 0 ]; then echo "[gpu_all] failed: ${FAILED[*]}"; return 1; fi
}

main 2>&1 | tee "$OUT/gpu_all.log"   # everything also lands in $OUT/gpu_all.log
exit "${PIPESTATUS[0]}"
