"""Record the runs that chose the `cifar10-cpu` preset: what each changed, its epochs, kNN top-1, time.

Result: benchmarks/results/cifar10-cpu-preset-runs.json and a Markdown table
on stdout (the README's "Real data" section quotes it). Each run is a folder
written by ``python -m simclr_lite pretrain --preset cifar10-cpu ...`` on the
CIFAR-10 JPEG copy (kNN k = 200 on the 10,000 test images, bank = the 50,000
training images); the script reads its config.json, run.json and
metrics.jsonl and lists the fields that differ from the preset as it is now.

    python benchmarks/preset_runs.py runs/q3 runs/r1 runs/r2 runs/e1 runs/e2 runs/final

Runs with ``threads = 1`` ran two at a time, one per core: their accuracy
after a fixed number of epochs compares with the others, their wall time
does not.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _common as C  # noqa: E402
from simclr_lite.config import Config, preset  # noqa: E402

IGNORED = {"data", "log_every", "device", "knn_every", "checkpoint_every", "nan_check_every"}


def describe(run: Path, now: dict) -> dict:
    cfg = {**Config().to_dict(), **json.loads((run / "config.json").read_text())}  # older runs lack new fields
    summary = json.loads((run / "run.json").read_text())
    train_s = C.training_seconds(run)
    epoch_s = [r["epoch_time_s"] for r in C.epoch_lines(run) if "epoch_time_s" in r]
    diff = {k: v for k, v in cfg.items() if k not in IGNORED and now.get(k, v) != v}
    return {"run": str(run), "differs_from_preset": diff, "status": summary["status"],
            "epochs": round(summary["epochs"], 2), "knn_top1": summary["knn_top1"],
            "train_wall_s": train_s, "wall_with_final_knn_s": summary["wall_time_s"],
            "epoch_time_s_min_max": [min(epoch_s), max(epoch_s)],
            "threads": cfg.get("threads", 0) or "default", "device": summary["device"],
            "torch": summary["torch"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", default="benchmarks/results/cifar10-cpu-preset-runs.json")
    args = ap.parse_args()
    now = preset("cifar10-cpu").to_dict()
    table = [describe(r, now) for r in args.runs]
    print("| run | differs from the preset | epochs | kNN top-1 | training wall (s) | threads |")
    print("|---|---|---|---|---|---|")
    for t in table:
        diff = ", ".join(f"{k}={v}" for k, v in t["differs_from_preset"].items()) or "(the preset)"
        print(f"| {t['run']} | {diff} | {t['epochs']:g} | {100 * t['knn_top1']:.1f}% | {t['train_wall_s']:.0f} "
              f"| {t['threads']} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    record = {"what": __doc__.splitlines()[0], "preset_now": now, "runs": table}
    Path(args.out).write_text(json.dumps(C.public_paths(record), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
