"""Host synchronisations per training step on a GPU, counted by torch.cuda.set_sync_debug_mode.

Result it produces (issue 16: "no host synchronisation in the steady-state step"): the number of
CUDA synchronising calls per step of `simclr_lite.train.pretrain`, outside the steps that log (every
`log_every` steps the loss is read back and the NaN check runs: those syncs are expected). Two runs
of one epoch, of S and 2S steps, with the same settings; their difference is S steady-state steps
plus S / log_every logging steps, so start-up, the end of the epoch and the final kNN cancel out:

    syncs per step = (syncs(2S) - syncs(S) - S / log_every x syncs per logging step) / S

and the check passes when it is below 0.05 (no step syncs except the logging ones). Writes
`$OUT/sync-<device>.json`. On a CPU there is nothing to count: the script says so and exits 0
(tests/test_train.py counts host reads per step on the CPU instead).

    python benchmarks/check_sync.py              # one GPU: about 20 s
"""
from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from simclr_lite.config import preset  # noqa: E402
from simclr_lite.train import pretrain  # noqa: E402

STEPS, LOG_EVERY, BATCH = 40, 20, 512


def count_syncs(steps: int) -> int:
    """CUDA syncs warned about during one epoch of ``steps`` steps (random CIFAR-shaped images)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (steps * BATCH, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (steps * BATCH,), generator=g)
    data = (x, y, x[:512], y[:512])
    cfg = preset("cifar10-gpu", epochs=1, knn_every=0, log_every=LOG_EVERY, nan_check_every=LOG_EVERY,
                 warmup_epochs=0, device="cuda", knn_k=20)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            pretrain(cfg, out=None, data=data, progress=False)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message).lower() for w in caught)


def main() -> int:
    out = Path(os.environ.get("OUT", "benchmarks/results"))
    if not torch.cuda.is_available():
        print("[check_sync] no CUDA device: nothing to count here (the CPU test counts host reads per step)")
        return 0
    count_syncs(4)                                     # warm-up: cuDNN autotuning, allocator
    short, long = count_syncs(STEPS), count_syncs(2 * STEPS)
    logs = STEPS // LOG_EVERY
    # a logging step reads the loss (1) and runs the NaN check (1): 2 expected syncs each
    per_step = (long - short - 2 * logs) / STEPS
    res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "steps": [STEPS, 2 * STEPS],
           "log_every": LOG_EVERY, "syncs": [short, long], "syncs_per_steady_state_step": round(per_step, 3),
           "target": "< 0.05", "met": per_step < 0.05}
    out.mkdir(parents=True, exist_ok=True)
    name = res["device"].lower().replace(" ", "-")
    (out / f"sync-{name}.json").write_text(json.dumps(res, indent=1))
    print(f"[check_sync] {res['device']}: {short} syncs in {STEPS} steps, {long} in {2 * STEPS}: "
          f"{per_step:.2f} per steady-state step (target < 0.05): {'met' if res['met'] else 'MISSED'}")
    return 0 if res["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
