#!/usr/bin/env bash
# Everything that needs a GPU, in under 9 minutes on one H200, ending with the table of issue 16's targets.
#
#   OUT=/some/folder SIMCLR_DATA=/path/with/cifar10 bash benchmarks/gpu_all.sh
#   BENCH_QUICK=1 bash benchmarks/gpu_all.sh     # tiny settings on a CPU: checks the script runs (minutes)
#
# OUT: where the results JSON files and gpu_all.log go (default benchmarks/results).
# SIMCLR_DATA: a folder with cifar10/train.tar.gz and test.tar.gz; default: data/ when
#   data/cifar10/train.tar.gz exists (git-ignored; carry it to the GPU machine); without either the
#   benchmarks use random uint8 images of CIFAR-10's shape and say so in the JSON (the book part check is skipped).
# Wheels of the benchmark-only dependencies (lightly, kornia and theirs) are installed from
# .whl/ when present (no internet needed); without them, bench_loss / bench_train_step use a
# copy of lightly's NTXentLoss and torchvision transforms, and kornia's row is skipped.
#
# Time on a GPU: each step runs under `timeout`; the limits add up to 480 s (decode 30, exactness tests
# 25 + 20, augment 100, loss 45, kNN 20, train step 120, host syncs per step 20, book check 100), plus 30 s
# for the wheels: 510 s, which leaves 30 s of the 540 s for start-up. Every script writes its JSON as soon as it has figures.
set -uo pipefail
cd "$(dirname "$0")/.."
export OUT="${OUT:-benchmarks/results}"
mkdir -p "$OUT"

main() {
if [ -z "${SIMCLR_DATA:-}" ] && [ -f data/cifar10/train.tar.gz ]; then export SIMCLR_DATA="$PWD/data"; fi
echo "[gpu_all] SIMCLR_DATA=${SIMCLR_DATA:-<unset: random data>} OUT=$OUT BENCH_QUICK=${BENCH_QUICK:-0}"
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
  timeout 30 "$PY" -m pip install -q --no-index --no-deps --upgrade --target /tmp/site "${WHEELS[@]}" \
    || echo "[gpu_all] installing the wheels failed: lightly / kornia rows may be missing"
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

DEV=cuda; STEP_ARGS=(--no-compile)   # compile gave no gain on an H200 (3.0-3.6 s vs 3.1-3.4 s per epoch)
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
  || { DEV=cpu; STEP_ARGS=(--no-epoch); echo "[gpu_all] no GPU: running on the CPU"; }
QUICK=0; [ "${BENCH_QUICK:-0}" != "0" ] && QUICK=1

FAILED=()
run() {  # run NAME TIMEOUT_S COMMAND...: one step, bounded in time, failures recorded; returns its status
  local name=$1 limit=$2 rc=0; shift 2
  echo; echo "=== $name (limit $limit s; $(( $(date +%s) - T0 )) s elapsed) ==="
  timeout --signal=TERM --kill-after=5 "$limit" "$@" || rc=$?
  if [ "$rc" -ne 0 ]; then echo "[gpu_all] $name FAILED or timed out (rc=$rc)"; FAILED+=("$name"); fi
  return "$rc"
}
L() { if [ "$DEV" = cpu ]; then echo $(( $1 * 3 )); else echo "$1"; fi; }   # the CPU fallback is slower

# 1. decode CIFAR-10 once (cached for the other scripts); a no-op without SIMCLR_DATA
if [ -n "${SIMCLR_DATA:-}" ]; then
  run decode 30 "$PY" -c "
import sys; sys.path.insert(0, '.')
from simclr_lite.data import load_dataset
for train in (True, False):
    x, y, _ = load_dataset(None, train, size=32); print('[gpu_all] CIFAR-10', 'train' if train else 'test', tuple(x.shape))
" || unset SIMCLR_DATA
fi
# 2. the exactness checks on this device: the golden views of the pre-fusion code (tests/golden), foreach LARS
SAME=0; LARS=0
run same_views "$(L 25)" "$PY" -m pytest -q -x -p no:cacheprovider tests/test_augment.py -k "golden or concat" && SAME=1
run foreach_lars "$(L 20)" "$PY" -m pytest -q -x -p no:cacheprovider tests/test_optim.py -k foreach && LARS=1
"$PY" - "$OUT/checks.json" "$SAME" "$LARS" "$DEV" <<'PYEOF'
import json, sys, torch
out, same, lars, dev = sys.argv[1:]
name = torch.cuda.get_device_name() if dev == "cuda" else "CPU"
json.dump({"same_views": same == "1", "foreach_lars": lars == "1", "device": name}, open(out, "w"))
PYEOF
# 3. benchmarks: augmentation (+ its compiled variant), the loss, the kNN monitor, the training step
run augment    "$(L 100)" "$PY" benchmarks/bench_augment.py --device $DEV
run knn        "$(L 20)" "$PY" benchmarks/bench_knn.py --device $DEV
if [ "$QUICK" = 1 ] && [ "$DEV" = cpu ]; then   # minutes of ResNet-18 on a small CPU: each has its own quick mode
  echo "[gpu_all] quick on a CPU: loss and train_step skipped (BENCH_QUICK=1 python benchmarks/bench_loss.py etc.)"
else
  run loss       "$(L 45)" "$PY" benchmarks/bench_loss.py --device $DEV
  run train_step "$(L 120)" "$PY" benchmarks/bench_train_step.py --device $DEV "${STEP_ARGS[@]}"
fi
run sync_check "$(L 20)" "$PY" benchmarks/check_sync.py   # syncs per steady-state step (a no-op on a CPU)
# 4. the book's full-scale runner, a short check: part ch05-fig9 at the smoke budget on this device (the
#    parts themselves, at most 9 minutes each: python -m simclr_book.fullscale PART, see book/reproduce.md)
if [ -n "${SIMCLR_DATA:-}" ]; then
  run book_part "$(L 100)" env SIMCLR_DEVICE="$DEV" "$PY" -m simclr_book.fullscale ch05-fig9 --budget smoke \
    --out "$OUT/book-part-check.json"
else
  echo "[gpu_all] book part check skipped (needs CIFAR-10: SIMCLR_DATA)"
fi

echo; echo "=== results ($(( $(date +%s) - T0 )) s in all; files in $OUT) ==="
"$PY" benchmarks/summarize.py "$OUT"
echo; "$PY" benchmarks/summarize.py --targets "$OUT"
if [ ${#FAILED[@]} -gt 0 ]; then echo "[gpu_all] failed: ${FAILED[*]}"; return 1; fi
}

main 2>&1 | tee "$OUT/gpu_all.log"   # everything also lands in $OUT/gpu_all.log
exit "${PIPESTATUS[0]}"
