"""Seconds per CIFAR-10 epoch of each small encoder on this CPU: the cost side of the cifar10-cpu preset.

Result: for each candidate encoder of `sweep_cpu_preset.py`, the measured time
of one full pretraining step (two SimCLRAugment views, forward and backward
of both, NT-Xent, LARS) at batch 256 on 32x32 images, and the implied
seconds per 50,000-image epoch and epochs per 13 minutes, in one run on the
same cores. Run it on an idle machine: other processes on the same cores
slow PyTorch's threads many-fold.

    python benchmarks/bench_cpu_throughput.py --out benchmarks/results
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from simclr_lite.augment import SimCLRAugment  # noqa: E402
from simclr_lite.losses import nt_xent  # noqa: E402
from simclr_lite.models import build_simclr  # noqa: E402
from simclr_lite.optim import build_optimizer  # noqa: E402

ENCODERS = [("resnet10", 0.25, 2), ("resnet18", 0.25, 2), ("resnet10", 0.5, 2), ("resnet10", 0.25, 1),
            ("resnet18", 0.5, 2), ("resnet18", 0.25, 1), ("resnet18", 1.0, 1)]


def time_step(arch: str, width: float, stem_stride: int, batch: int, steps: int) -> float:
    torch.manual_seed(0)
    model = build_simclr(arch, width, True, "nonlinear", 128, stem_stride).to(memory_format=torch.channels_last)
    opt = build_optimizer(model, "lars", 1.0, 1e-6)
    aug = SimCLRAugment(32, 0.5)
    x = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8)
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        inp = torch.cat([aug(x), aug(x)]).contiguous(memory_format=torch.channels_last)
        _, z = model(inp)
        loss = nt_xent(*z.chunk(2), 0.2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:  # the first step warms up oneDNN
            times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    rows = []
    for arch, width, ss in ENCODERS:
        t = time_step(arch, width, ss, args.batch, args.steps)
        epoch = 50000 // args.batch * t
        rows.append({"arch": arch, "width": width, "stem_stride": ss, "step_s": round(t, 4),
                     "images_per_s": round(args.batch / t, 1), "epoch_s": round(epoch, 1),
                     "epochs_in_13_min": round(780 / epoch, 1)})
        print(f"{arch} w{width} stem-stride {ss}: {t * 1000:.0f} ms/step, {args.batch / t:.0f} img/s, "
              f"{epoch:.0f} s/epoch, {780 / epoch:.1f} epochs in 13 min", flush=True)
    out = {"what": "one SimCLR pretraining step (2 views, fwd+bwd, NT-Xent, LARS), median of steps",
           "device": f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
           "torch": torch.__version__, "batch": args.batch, "rows": rows}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "cpu-throughput.json").write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
