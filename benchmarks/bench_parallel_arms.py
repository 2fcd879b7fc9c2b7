"""Arms side by side on a CPU: one process per core at one thread each, against one process with every core.

The book's chapters train many small arms at the ``cpu`` budget (ResNet-10 at width 1/4, batch 256,
32x32 CIFAR-10). ``simclr_book.fullscale.train_missing`` trains the missing ones in one process per core,
one thread each. This script measures the ground for that: the median time of one full pretraining step
of that arm (two views, forward and backward, NT-Xent, LARS; ``bench_cpu_throughput.time_step``)

- in one process with all cores' threads (what a chapter did before), and
- in one process per core, one thread each, all stepping at the same time,

and prints the arms trained per hour each way and their ratio, measured side by side in one run, with
the seconds per 50,000-image epoch that ``simclr_book.plan`` uses for the ``cpu`` budget.

Result on 2 cores of an AMD EPYC (KVM), recorded in ``benchmarks/results/parallel-arms-*.json``: see
that file and the Reproducing page. Run it on an idle machine.

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
ARM = ("resnet10", 0.25, 2)          # the cpu budget's arm recipe: arch, width, stem stride
STEPS_PER_EPOCH = 50_000 // 256


def child(threads: int, steps: int, batch: int) -> None:
    """One timing process: ``steps`` steps of the arm at ``threads`` threads; prints its median step seconds."""
    torch.set_num_threads(threads)
    sys.path.insert(0, str(HERE))
    from bench_cpu_throughput import time_step
    print(json.dumps({"threads": threads, "step_s": time_step(*ARM, batch, steps)}), flush=True)


def launch(procs: int, threads: int, steps: int, batch: int) -> list[float]:
    """``procs`` timing processes at once, ``threads`` threads each: their median step seconds."""
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
    ap.add_argument("--steps", type=int, default=12, help="timed steps per process (median of them)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help="results folder (default: $OUT or benchmarks/results)")
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.steps, args.batch)
    if C.QUICK:
        args.steps, args.batch = 2, 32
    cores = C.cpu_cores()
    dev = torch.device("cpu")
    info = C.machine(dev)
    C.warn_if_busy(dev)
    print(f"{ARM[0]} width {ARM[1]}, batch {args.batch}, {args.steps} steps per process, {cores} cores "
          f"({C.device_name(dev)})", flush=True)
    one = launch(1, cores, args.steps, args.batch)[0]
    side = launch(cores, 1, args.steps, args.batch)
    per_proc = sorted(side)[len(side) // 2]
    arms_one, arms_side = 1 / one, cores / per_proc      # steps per second of the machine, either way
    ratio = arms_side / arms_one
    print(f"  one process, {cores} threads:            {one * 1000:7.0f} ms/step  "
          f"-> {one * STEPS_PER_EPOCH:5.0f} s per 50,000-image epoch")
    print(f"  {cores} processes side by side, 1 thread:   {per_proc * 1000:7.0f} ms/step each "
          f"-> {per_proc * STEPS_PER_EPOCH:5.0f} s per epoch each, {per_proc * STEPS_PER_EPOCH / cores:5.0f} s "
          f"per epoch of the machine")
    print(f"  side by side gets {ratio:.2f}x the work done of one process")
    C.write_result("parallel-arms", dev, {
        "settings": {"arch": ARM[0], "width": ARM[1], "stem_stride": ARM[2], "batch": args.batch,
                     "steps": args.steps, "cores": cores},
        "results": {"one_process_step_s": one, "side_by_side_step_s": side,
                    "one_process_epoch_s": round(one * STEPS_PER_EPOCH, 1),
                    "side_by_side_epoch_s_each": round(per_proc * STEPS_PER_EPOCH, 1),
                    "side_by_side_epoch_s_machine": round(per_proc * STEPS_PER_EPOCH / cores, 1),
                    "ratio": round(ratio, 3)},
    }, args.out, machine_info=info)


if __name__ == "__main__":
    main()
