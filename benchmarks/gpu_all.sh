#!/usr/bin/env bash
# Every benchmark of benchmarks/ with GPU-sized settings, in about 5 minutes on one H100/H200.
#
#   OUT=/some/folder SIMCLR_DATA=/path/with/cifar10 bash benchmarks/gpu_all.sh
#
# OUT: where the results JSON files go (default benchmarks/results).
# SIMCLR_DATA: a folder with cifar10/train.tar.gz and test.tar.gz (optional: without it the
#   benchmarks use random uint8 images of CIFAR-10's shape and say so in the JSON).
# Wheels of the benchmark-only dependencies (lightly, kornia and theirs) are installed from
# .whl/ when present (no internet needed); without them, bench_loss / bench_train_step use a
# copy of lightly's NTXentLoss and torchvision transforms, and kornia's row is skipped.
# BENCH_QUICK=1 runs everything with tiny settings (a syntax check; also works without a GPU).
set -uo pipefail
cd "$(dirname "$0")/.."
export OUT="${OUT:-benchmarks/results}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
T0=$(date +%s)

if ls .whl/*.whl >/dev/null 2>&1; then
  # one wheel at a time: wheels built for another Python version are skipped, not fatal
  for w in .whl/*.whl; do
    case "$(basename "$w")" in
      packaging-*|typing_extensions-*)   # only when missing: never shadow the installed ones
        mod=$(basename "$w" | cut -d- -f1); "$PY" -c "import $mod" 2>/dev/null && continue ;;
    esac
    "$PY" -m pip install -q --no-index --no-deps --target /tmp/site "$w" >/dev/null 2>&1 \
      || echo "[gpu_all] skipped wheel $(basename "$w") (not for this Python/platform)"
  done
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
" || echo "[gpu_all] CIFAR-10 decode failed: the benchmarks fall back to random data"
fi

# typical times on an H100 with 16 cores: ~30 + 20 + 20 + 10 + 180 s; the limits only stop a hang
run augment      90 benchmarks/bench_augment.py --device $DEV
run loss         90 benchmarks/bench_loss.py --device $DEV
run knn_cpu      90 benchmarks/bench_knn.py --device cpu
run knn_gpu      45 benchmarks/bench_knn.py --device $DEV
run train_step  300 benchmarks/bench_train_step.py --device $DEV ${EXTRA[@]+"${EXTRA[@]}"}

echo; echo "=== summary ($(( $(date +%s) - T0 )) s in all; results in $OUT) ==="
"$PY" benchmarks/summarize.py "$OUT"
if [ ${#FAILED[@]} -gt 0 ]; then echo "[gpu_all] failed: ${FAILED[*]}"; exit 1; fi
