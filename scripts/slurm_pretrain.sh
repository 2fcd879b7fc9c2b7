#!/usr/bin/env bash
# SimCLR on ImageNet with SLURM: N nodes x 8 GPUs, one torchrun per node, DDP over NCCL (Sec. 2.2 / 4).
#
#   sbatch --nodes=4 scripts/slurm_pretrain.sh /path/to/imagenet runs/in-r50      # 32 GPUs, 128 images each
#
# DATA must hold train/ and test/ ImageFolder trees (link ImageNet's val/ as test/). The global batch
# (--batch-size, 4096 in the imagenet-r50 preset, with LARS at lr 0.3 x 4096/256 = 4.8) is split evenly
# over the nodes x 8 processes; global BN is on because there is more than one process.
#
# Preemption and the time limit: 120 s before the job's end SLURM sends SIGUSR1 to every process of
# the job step (--signal without "B:"). torchrun is told to handle it too (--signals-to-handle), so it
# passes it on to its workers and gives them --shutdown-timeout seconds before SIGKILL instead of dying
# at once. The trainer (train.py, _Stop) finishes the current step, all ranks agree to stop, rank 0
# writes checkpoint.pt and every rank exits with code 143; SIGTERM (scancel, preemption) does the same.
# (--signals-to-handle needs a recent torchrun; with an older one, drop it and use
# "#SBATCH --signal=B:USR1@120" with a trap that sends SIGTERM to srun, which torchrun forwards.)
# The script then requeues the job, and the next start continues with --resume from the checkpoint
# (exactly: data order and augmentations are functions of the seed and the step).
#
#SBATCH --job-name=simclr-r50
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --mem=0
#SBATCH --time=24:00:00
#SBATCH --signal=USR1@120
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out

set -euo pipefail

DATA=${1:?usage: sbatch scripts/slurm_pretrain.sh DATA OUT [extra pretrain flags]}
OUT=${2:?usage: sbatch scripts/slurm_pretrain.sh DATA OUT [extra pretrain flags]}
shift 2
MAX_RESTARTS=${MAX_RESTARTS:-50}

MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export MASTER_ADDR
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
export TORCH_NCCL_ASYNC_ERROR_HANDLING=1

RESUME=()
if [ -f "$OUT/checkpoint.pt" ]; then
    RESUME=(--resume)
fi
echo "$(date -u +%FT%TZ) job $SLURM_JOB_ID restart ${SLURM_RESTART_COUNT:-0} on $SLURM_NNODES nodes," \
     "rendezvous $MASTER_ADDR:29500, ${RESUME[*]:-fresh start}"
BEFORE=$(stat -c %Y "$OUT/checkpoint.pt" 2>/dev/null || echo 0)

set +e
srun --kill-on-bad-exit=0 \
    torchrun --nnodes="$SLURM_NNODES" --nproc_per_node=8 \
        --rdzv_id="$SLURM_JOB_ID" --rdzv_backend=c10d --rdzv_endpoint="$MASTER_ADDR:29500" \
        --signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1 --shutdown-timeout=100 \
        -m simclr_lite pretrain --preset imagenet-r50 --data "$DATA" --out "$OUT" \
        --device cuda --no-progress ${RESUME[@]+"${RESUME[@]}"} "$@"
CODE=$?
set -e

if [ -f "$OUT/run.json" ] && grep -q '"status": "completed"' "$OUT/run.json"; then
    echo "$(date -u +%FT%TZ) finished: $OUT/run.json"
    exit 0
fi
AFTER=$(stat -c %Y "$OUT/checkpoint.pt" 2>/dev/null || echo 0)
# Requeue only when this attempt left a newer checkpoint (it was stopped, not broken at start-up).
if [ "$CODE" -ne 0 ] && [ "$AFTER" -gt "$BEFORE" ] && [ "${SLURM_RESTART_COUNT:-0}" -lt "$MAX_RESTARTS" ]; then
    echo "$(date -u +%FT%TZ) stopped (exit $CODE) with a checkpoint; requeueing job $SLURM_JOB_ID"
    scontrol requeue "$SLURM_JOB_ID"
    exit 0
fi
echo "$(date -u +%FT%TZ) failed (exit $CODE) without a new checkpoint; see the log above" >&2
exit "$CODE"
