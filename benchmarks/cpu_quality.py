"""The README's headline: kNN top-1 on CIFAR-10 after the `cifar10-cpu` preset, against two baselines.

Result (measured on the machine it runs on, one run, written to
benchmarks/results/<preset>-quality.json, i.e. cifar10-cpu-quality.json for the
default preset; --out picks another folder): weighted kNN top-1 (k = 200, cosine,
bank = the 50,000 training images, queries = the 10,000 test images) of
  1. raw pixels (per-image-centred, 3,072-d),
  2. the preset's encoder with random weights (same architecture),
  3. the same encoder after `python -m simclr_lite pretrain --preset cifar10-cpu`,
with the pretraining wall time, the device and the versions.

    python benchmarks/cpu_quality.py --data ../shared/datasets          # ~15 min on 2 CPU cores
    python benchmarks/cpu_quality.py --data PATH --from-run runs/x       # baselines for a finished run

``--from-run`` reads a run folder that ``python -m simclr_lite pretrain`` wrote
(its run.json, metrics.jsonl and config.json) instead of pretraining again,
and measures the two baselines for that run's architecture.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _common as C  # noqa: E402
from simclr_lite.data import load_cifar10  # noqa: E402
from simclr_lite.evaluate import extract_features, knn_accuracy, raw_pixel_features  # noqa: E402
from simclr_lite.config import Config, build_model, preset  # noqa: E402
from simclr_lite.distributed import describe_device  # noqa: E402
from simclr_lite.train import pretrain  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="CIFAR-10 root (default $SIMCLR_DATA or data/)")
    ap.add_argument("--preset", default="cifar10-cpu")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--run", default="runs/cpu-quality", help="run folder for the pretraining")
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="config overrides")
    ap.add_argument("--from-run", default=None, help="a finished pretrain run folder: report it, do not retrain")
    args = ap.parse_args()
    overrides = {}
    for kv in args.set:
        k, v = kv.split("=", 1)
        overrides[k] = type(getattr(preset(args.preset), k))(v)
    cfg = preset(args.preset, data=args.data, **overrides)
    machine = C.machine(torch.device("cpu"))   # at the start: its load average, and the commit (+dirty if edited)
    if args.from_run:
        cfg = Config(**json.loads((Path(args.from_run) / "config.json").read_text()))
    xtr, ytr = load_cifar10(args.data, train=True)
    xte, yte = load_cifar10(args.data, train=False)

    t = time.time()
    raw = knn_accuracy(raw_pixel_features(xtr), ytr, raw_pixel_features(xte), yte)
    print(f"raw pixels: kNN top-1 {raw:.4f} ({time.time() - t:.0f} s)", flush=True)
    torch.manual_seed(cfg.seed)
    rand = build_model(cfg)
    t = time.time()
    rnd = knn_accuracy(extract_features(rand.encoder, xtr), ytr, extract_features(rand.encoder, xte), yte)
    print(f"random {cfg.arch} x{cfg.width}: kNN top-1 {rnd:.4f} ({time.time() - t:.0f} s)", flush=True)

    if args.from_run:
        run = Path(args.from_run)
        summary = json.loads((run / "run.json").read_text())
        total = summary["wall_time_s"]
    else:
        run = Path(args.run)
        if run.exists():
            import shutil
            shutil.rmtree(run)
        t = time.time()
        summary = pretrain(cfg, run, data=(xtr, ytr, xte, yte))
        total = time.time() - t
    pre_s = C.training_seconds(run)
    print(f"SimCLR {args.preset}: kNN top-1 {summary['knn_top1']:.4f} after {summary['epochs']:.1f} epochs; "
          f"pretraining {pre_s:.0f} s, with the final kNN {total:.0f} s", flush=True)
    out = {"what": "kNN top-1 (k=200, cosine, temperature 0.1) on CIFAR-10 (JPEG copy) test, bank = 50k train",
           "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": C._command_line(),
           "simclr_lite_commit": machine["versions"]["simclr_lite_commit"], "machine": machine,
           "preset": args.preset, "config": cfg.to_dict(), "device": describe_device(torch.device("cpu")),
           "torch": torch.__version__, "raw_pixels_top1": raw, "random_encoder_top1": rnd,
           "simclr_top1": summary["knn_top1"], "epochs": summary["epochs"],
           "pretrain_wall_s": round(pre_s, 1), "pretrain_plus_final_knn_wall_s": round(total, 1),
           "pretrained_by": (f"python -m simclr_lite pretrain (run folder {args.from_run}, config above)"
                             if args.from_run else "this script")}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"{args.preset}-quality.json").write_text(json.dumps(C.public_paths(out), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
