#!/usr/bin/env bash
# The GPU session's one script (device tool): writes everything under $OUT.
#   1. the cifar10-cpu candidate sweep (benchmarks/sweep_cpu_preset.py), all runs side by side;
#   2. the performance benchmarks (benchmarks/gpu_all.sh, issue 5);
#   3. a short cifar10-gpu pretraining run (ResNet-18, the paper's CIFAR settings) with its metrics;
#   4. (STAGES=book) every chapter at the smoke budget on cuda under nbval (SIMCLR_DEVICE=cuda):
#      the book's code paths on a GPU (devices, autocast) in a few minutes.
#   5. (STAGES=part, PART=ch05-fig9 by default) one part of the book at full scale (python -m
#      simclr_book.fullscale): its results file lands in $OUT/parts/ (commit it to book/results/gpu/),
#      after a smoke check of the same part on cuda.
# Data: CIFAR-10 archives carried in .devcarry/cifar10/ (never committed).
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-benchmarks/results/device}
R=/tmp/devout; mkdir -p "$R" "$OUT"
export SIMCLR_DATA="$PWD/.devcarry" SIMCLR_CACHE=/tmp/simclr_cache PYTHONPATH="$PWD"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc;
  python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"; } | tee "$R/device.txt"
t0=$(date +%s)
python3 -c "from simclr_lite.data import load_cifar10; load_cifar10(train=True); load_cifar10(train=False)"
echo "decoded in $(( $(date +%s) - t0 )) s"
STAGES=${STAGES:-"sweep bench gpu"}
if [[ $STAGES == *sweep* ]]; then
  timeout ${SWEEP_S:-200} python3 benchmarks/sweep_cpu_preset.py --out "$R" --work /tmp/sweep 2>&1 | tail -14
fi
if [[ $STAGES == *bench* ]] && [ -f benchmarks/gpu_all.sh ]; then
  OUT="$R" timeout ${BENCH_S:-270} bash benchmarks/gpu_all.sh 2>&1 | tail -40
fi
if [[ $STAGES == *gpu* ]]; then
  timeout ${GPU_S:-150} python3 -m simclr_lite pretrain --preset cifar10-gpu --epochs ${GPU_EPOCHS:-10} \
    --warmup-epochs 1 --knn-every 5 --out /tmp/gpu-run --no-progress 2>&1 | tail -5
  cp /tmp/gpu-run/run.json "$R/cifar10-gpu-run.json" 2>/dev/null
  cp /tmp/gpu-run/metrics.jsonl "$R/cifar10-gpu-metrics.jsonl" 2>/dev/null
fi
if [[ $STAGES == *book* ]]; then
  SIMCLR_BUDGET=smoke SIMCLR_DEVICE=cuda timeout ${BOOK_S:-420} python3 -m pytest --nbval --nbval-current-env \
    --nbval-sanitize-with book/nbval_sanitize.cfg --nbval-cell-timeout 300 -p no:cacheprovider -q \
    book/[0-9][0-9]_*.ipynb > "$R/book-smoke-cuda.txt" 2>&1
  echo "book at smoke on cuda: rc $?"; tail -5 "$R/book-smoke-cuda.txt"
fi
if [[ $STAGES == *part* ]]; then
  P=${PART:-ch05-fig9}; mkdir -p "$OUT/parts"
  SIMCLR_DEVICE=cuda timeout 120 python3 -m simclr_book.fullscale "$P" --budget smoke --out "$R/$P-smoke-cuda.json" \
    2>&1 | tail -4
  timeout ${PART_S:-540} python3 -m simclr_book.fullscale "$P" --out "$OUT/parts/$P.json" 2>&1 | tail -20
fi
tar czf "$OUT/results.tar.gz" -C "$R" . && ls -la "$R" && cp "$R/device.txt" "$OUT/"
echo "total $(( $(date +%s) - t0 )) s"
