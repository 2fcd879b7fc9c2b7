"""Choose the `cifar10-cpu` preset: which small encoder learns most in a 2-core CPU's 15 minutes?

Result: a JSON table (kNN top-1 on the 10,000 CIFAR-10 test images, bank = the
50,000 training images) for each candidate configuration, trained for the
number of epochs that fits in about 13 minutes on the 2-core CPU (epochs per
candidate come from its CPU seconds per epoch, measured separately by
`benchmarks/bench_cpu_throughput.py`).

Why on a GPU: learning per epoch does not depend on the device (fp32, no
mixed precision, the same seeds), so all candidates can be trained side by
side on one GPU in a couple of minutes instead of hours on the CPU; the
winner is then timed for real on the CPU (README, "Real data").

    python benchmarks/sweep_cpu_preset.py --data ../shared/datasets --out benchmarks/results
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

# name -> CLI overrides on top of the cifar10-cpu preset
CANDIDATES: dict[str, list[str]] = {
    "r18w25s2-e9-t02": ["--arch", "resnet18", "--width", "0.25", "--stem-stride", "2", "--epochs", "9", "--temperature", "0.2"],
    "r18w25s2-e9-t05": ["--arch", "resnet18", "--width", "0.25", "--stem-stride", "2", "--epochs", "9", "--temperature", "0.5"],
    "r18w25s2-e9-t02-b512": ["--arch", "resnet18", "--width", "0.25", "--stem-stride", "2", "--epochs", "9", "--temperature", "0.2", "--batch-size", "512"],
    "r18w25s2-e9-t02-b128": ["--arch", "resnet18", "--width", "0.25", "--stem-stride", "2", "--epochs", "9", "--temperature", "0.2", "--batch-size", "128"],
    "r18w25s2-e9-t02-sc02": ["--arch", "resnet18", "--width", "0.25", "--stem-stride", "2", "--epochs", "9", "--temperature", "0.2", "--min-scale", "0.2"],
    "r18w25s2-e9-t02-lr3": ["--arch", "resnet18", "--width", "0.25", "--stem-stride", "2", "--epochs", "9", "--temperature", "0.2", "--lr", "3.0"],
    "r10w50s2-e6-t02": ["--arch", "resnet10", "--width", "0.5", "--stem-stride", "2", "--epochs", "6", "--temperature", "0.2"],
    "r10w25s1-e5-t02": ["--arch", "resnet10", "--width", "0.25", "--stem-stride", "1", "--epochs", "5", "--temperature", "0.2"],
    "r10w25s2-e16-t02": ["--arch", "resnet10", "--width", "0.25", "--stem-stride", "2", "--epochs", "16", "--temperature", "0.2"],
    "r18w50s2-e3-t02": ["--arch", "resnet18", "--width", "0.5", "--stem-stride", "2", "--epochs", "3", "--temperature", "0.2"],
    # the projection head's hidden width at the preset's encoder and ~19 epochs (CPU runs: 512 beat 128 by 1 point)
    "r10w25s2-e19-h512": ["--epochs", "19", "--proj-hidden", "512"],
    "r10w25s2-e19-h1024": ["--epochs", "19", "--proj-hidden", "1024"],
    "r10w25s2-e19-h2048": ["--epochs", "19", "--proj-hidden", "2048"],
    "r10w25s2-e19-h1024-d64": ["--epochs", "19", "--proj-hidden", "1024", "--proj-dim", "64"],
}
# every candidate: a fixed number of epochs (the preset's time budget is a CPU's), eager, the paper's head
# unless the candidate sets --proj-hidden
BASE = ["--time-budget", "0", "--compile", "false", "--proj-hidden", "0"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("SIMCLR_DATA"))
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--work", default="/tmp/sweep_cpu_preset")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--parallel", type=int, default=10)
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--extra", default="", help="flags appended to every run (e.g. for a quick test)")
    args = ap.parse_args()
    names = args.only or list(CANDIDATES)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs: list[tuple[str, subprocess.Popen]] = []
    t0 = time.time()
    pending = list(names)
    results = {}
    while pending or procs:
        while pending and len(procs) < args.parallel:
            n = pending.pop(0)
            cmd = [sys.executable, "-m", "simclr_lite", "pretrain", "--preset", "cifar10-cpu", "--out",
                   str(work / n), "--device", args.device, "--amp", "off", "--no-progress", "--threads", "1",
                   *(["--data", args.data] if args.data else []), *BASE, *CANDIDATES[n], *args.extra.split()]
            log = open(work / f"{n}.log", "w")
            procs.append((n, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)))
        time.sleep(2)
        for n, p in list(procs):
            if p.poll() is not None:
                procs.remove((n, p))
                run = work / n / "run.json"
                if run.exists():
                    r = json.loads(run.read_text())
                    results[n] = {"knn_top1": r["knn_top1"], "epochs": r["epochs"], "wall_time_s": r["wall_time_s"],
                                  "overrides": CANDIDATES[n]}
                else:
                    results[n] = {"error": (work / f"{n}.log").read_text()[-500:]}
                print(n, results[n], flush=True)
    import torch
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() and args.device.startswith("cuda") else "cpu"
    out = {"what": "kNN top-1 (k=200, CIFAR-10 test, bank = 50k train) of cifar10-cpu candidates, fp32",
           "device": dev, "torch": torch.__version__, "parallel_runs": args.parallel,
           "total_wall_s": round(time.time() - t0, 1), "results": results}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    path = Path(args.out) / "sweep-cpu-preset.json"
    import _common as C   # benchmarks/ is this script's folder; no machine paths in what it records
    path.write_text(json.dumps(C.public_paths(out), indent=2) + "\n")
    for n, r in sorted(results.items(), key=lambda kv: -kv[1].get("knn_top1", 0)):
        print(f"{n:28s} {r.get('knn_top1', float('nan')):.4f}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
