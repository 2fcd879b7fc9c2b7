"""Arms side by side on a CPU: one process per core at one thread each, against one process with every core.

The book's chapters train many small arms at the ``cpu`` budget (the main recipe: ResNet-10 at 1/4
width, batch 256, 32x32 images). ``simclr_book.fullscale.train_missing`` trains a part's missing arms in
one process per core, one thread each. This script measures the ground for that on the real training
loop, ``simclr_lite.train.pretrain`` of the ``cpu`` arm's config (augmentation, forward and backward,
NT-Xent, LARS, logging; the final kNN on a small test set) for ``--steps`` steps of random images:

- one arm after another in one process with all cores' threads (what a chapter did before),
- one arm per core, each process at one thread, all at the same time, and
- one arm alone in one process at one thread (how a run recorded at one thread, alone, was timed),

and prints the seconds per arm-epoch of 50,000 images each way and their ratio, measured side by side in
one run, with the repeats' spread, and how much slower an arm trains beside the others than alone at one
thread (the factor that turns a recorded one-thread time into its time side by side). Run it on an idle machine; its results file names the machine.

    python benchmarks/bench_parallel_arms.py
    BENCH_QUICK=1 python benchmarks/bench_parallel_arms.py     # a few steps: checks the script runs
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import _common as C
import torch

HERE = Path(__file__).resolve().parent
EPOCH_STEPS = 50_000 // 256          # steps of a 50,000-image epoch at batch 256


def child(threads: int, steps: int, batch: int) -> None:
    """One timing process: ``pretrain`` of the cpu arm for ``steps`` steps at ``threads`` threads; prints
    its wall seconds per step (the whole call: what a chapter waits for)."""
    import tempfile
    import time

    from simclr_book.budget import arm_config, budget_sizes
    from simclr_lite.train import pretrain
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    n = steps * batch
    data = (torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(n) % 10,
            torch.randint(0, 256, (512, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(512) % 10)
    cfg = arm_config(budget_sizes("cpu"), epochs=1, batch_size=batch, knn_bank=0)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        pretrain(cfg, out=out, data=data, progress=False)
        seconds = time.perf_counter() - t0
    print(json.dumps({"threads": threads, "step_s": seconds / steps}), flush=True)


def launch(procs: int, threads: int, steps: int, batch: int) -> list[float]:
    """``procs`` timing processes at once, ``threads`` threads each: their seconds per step."""
    cmd = [sys.executable, __file__, "--child", str(threads), "--steps", str(steps), "--batch", str(batch)]
    running = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
               for _ in range(procs)]
    out = []
    for p in running:
        text, _ = p.communicate()
        if p.returncode:
            raise SystemExit(f"a timing process failed (exit {p.returncode}); run it alone: {' '.join(cmd)}")
        out.append(json.loads(text.strip().splitlines()[-1])["step_s"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60, help="training steps per arm (random images)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=2, help="each way, alternating")
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help="results folder (default: $OUT or benchmarks/results)")
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.steps, args.batch)
    if C.QUICK:
        args.steps, args.batch, args.repeats = 3, 32, 1
    cores = C.cpu_cores()
    dev = torch.device("cpu")
    info = C.machine(dev)
    C.warn_if_busy(dev)
    print(f"pretrain of the cpu arm (resnet10 x0.25), batch {args.batch}, {args.steps} steps per arm, {cores} cores "
          f"({C.device_name(dev)}), {args.repeats} repeats each way", flush=True)
    one, side, alone = [], [], []
    for _ in range(args.repeats):             # alternating, so a change of the machine's speed hits every way
        one.append(launch(1, cores, args.steps, args.batch)[0])
        side.append(max(launch(cores, 1, args.steps, args.batch)))   # the arms are done when the slowest is
        alone.append(launch(1, 1, args.steps, args.batch)[0])
    # seconds of machine time per arm-epoch: one at a time, or `cores` arms in the time of the slowest
    one_epoch = [t * EPOCH_STEPS for t in one]
    side_epoch = [t * EPOCH_STEPS / cores for t in side]
    ratio = min(one_epoch) / min(side_epoch)
    slower = min(side) / min(alone)           # an arm's epoch beside the others / alone at one thread
    print(f"  one arm at a time, {cores} threads:      {' / '.join(f'{e:.0f}' for e in one_epoch)} s per arm-epoch")
    print(f"  {cores} arms at once, 1 thread each:  {' / '.join(f'{e:.0f}' for e in side_epoch)} s per arm-epoch "
          f"({' / '.join(f'{t * EPOCH_STEPS:.0f}' for t in side)} s per epoch of each arm)")
    print(f"  one arm alone, 1 thread:             {' / '.join(f'{t * EPOCH_STEPS:.0f}' for t in alone)} s per epoch")
    print(f"  side by side gets {ratio:.2f}x the arms done per hour (best of {args.repeats} each way); each arm "
          f"trains {slower:.2f}x slower beside the others than alone at one thread")
    C.write_result("parallel-arms", dev, {
        "settings": {"config": "simclr_book.budget.arm_config(cpu), epochs=1 on random images", "batch": args.batch,
                     "steps": args.steps, "cores": cores, "repeats": args.repeats},
        "results": {"one_at_a_time_step_s": one, "side_by_side_slowest_step_s": side,
                    "one_at_a_time_epoch_s": [round(e, 1) for e in one_epoch],
                    "side_by_side_epoch_s_per_arm_of_machine": [round(e, 1) for e in side_epoch],
                    "alone_one_thread_step_s": alone,
                    "alone_one_thread_epoch_s": [round(t * EPOCH_STEPS, 1) for t in alone],
                    "ratio": round(ratio, 3), "side_by_side_over_alone_one_thread": round(slower, 3)},
    }, args.out, machine_info=info)


if __name__ == "__main__":
    main()
