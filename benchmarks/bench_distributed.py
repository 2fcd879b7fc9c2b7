"""Images per second and peak memory of SimCLR pretraining with 1, 2, ... processes (DDP, global BN, Sec. 2.2).

What it measures: for each process count N, one ``torchrun --standalone
--nproc_per_node N`` launch of this script, whose workers run
``simclr_lite.train.pretrain`` (the loop that ``python -m simclr_lite pretrain``
runs: two augmented views, forward, NT-Xent over the gathered global batch,
backward with DDP, global batch norm, LARS) on synthetic uint8 images held on
the device. Per process the batch is fixed (weak scaling), so the global batch
is ``N x --per-proc-batch``. Reported per N:

- ``images_per_s``: global batch x timed steps / seconds of those steps, from
  the loop's own log (``time_s`` of step ``warmup`` and of the last step);
  "images" are source images, each of which gives two views. The first
  ``--warmup`` steps (allocator, oneDNN/cuDNN autotuning) are not timed.
- peak memory per process: the maximum resident set size (``getrusage``,
  includes the Python interpreter, torch and the synthetic data set) on CPUs;
  ``torch.cuda.max_memory_allocated`` (and ``_reserved``) on GPUs.
- the ratios ``images_per_s(N) / images_per_s(1)`` (speed-up) and that over N
  (scaling efficiency).

On what: CPUs with gloo and ``--threads`` (default 1) threads per process when
no GPU is visible, so that N processes use N cores; one GPU per process with
NCCL when CUDA is available (``--nproc 1,2,4,8``). On a CPU machine shared
with other jobs the figures are pessimistic and noisy; the 1-minute load
average is recorded before and after. Results go to
``benchmarks/results/distributed-<device-slug>.json`` (or ``--out`` / ``$OUT``).

    python benchmarks/bench_distributed.py                    # CPU: 1 and 2 processes, about a minute
    python benchmarks/bench_distributed.py --also-local-bn    # and 2 processes with per-process BN
    python benchmarks/bench_distributed.py --nproc 1,2,4,8    # a machine with 8 GPUs (ResNet-50, 224 px)
    python benchmarks/bench_distributed.py --loader stream --workers 8   # JPEG decoding in DataLoader workers

``--loader stream`` measures the ImageNet pipeline instead of images held on
the device: the driver writes a synthetic ImageFolder tree of JPEG files
(``--source-size`` pixels, smooth noise so that they compress like photos)
and each process decodes its share of every step in ``--workers`` DataLoader
worker processes (``simclr_lite.data.ImageFolderStream``), then augments on
its device.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as C  # also puts the repository on sys.path
import torch

DEFAULTS = {  # small on CPUs (a run takes seconds), the imagenet-r50 model on GPUs
    "cpu": dict(arch="resnet10", width=0.5, image_size=32, cifar_stem=True, stem_stride=2, strength=0.5,
                blur=False, per_proc_batch=64, steps=8, warmup=2),
    "cuda": dict(arch="resnet50", width=1.0, image_size=224, cifar_stem=False, stem_stride=1, strength=1.0,
                 blur=True, per_proc_batch=128, steps=12, warmup=4),
}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--nproc", default=None, help="comma-separated process counts (CPU: 1,2; GPU: 1,2,4,8 up to "
                                                   "the GPUs visible)")
    p.add_argument("--arch", default=None)
    p.add_argument("--width", type=float, default=None)
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--per-proc-batch", type=int, default=None, help="images per process and step")
    p.add_argument("--steps", type=int, default=None, help="timed steps (rounded up to a multiple of --warmup)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process on CPUs")
    p.add_argument("--amp", default="auto", help="auto (bf16 on GPU), off, bf16, fp16")
    p.add_argument("--sync-bn", default="auto", choices=["auto", "on", "off"],
                   help="global BN (auto: on with more than one process); off shows what it costs")
    p.add_argument("--also-local-bn", action="store_true",
                   help="for N > 1 also time per-process BN (--sync-bn off): the cost of global BN")
    p.add_argument("--loader", default="memory", choices=["memory", "stream"],
                   help="memory: synthetic images on the device; stream: JPEG files decoded by DataLoader workers")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers per process (--loader stream)")
    p.add_argument("--source-size", type=int, default=None,
                   help="side of the synthetic JPEG files (--loader stream; default 1.5 x --image-size)")
    p.add_argument("--data", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help="results folder (default: $OUT, else benchmarks/results)")
    p.add_argument("--timeout", type=float, default=900, help="seconds allowed per launch")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--result", default=None, help=argparse.SUPPRESS)
    p.add_argument("--cifar-stem", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--stem-stride", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--strength", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--blur", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.device = "cuda" if args.device == "auto" and torch.cuda.is_available() else (
        "cpu" if args.device == "auto" else args.device)
    quick = dict(per_proc_batch=16, steps=2, warmup=1, width=0.125) if C.QUICK else {}  # BENCH_QUICK=1
    for k, v in {**DEFAULTS[args.device], **quick}.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.steps = -(-args.steps // args.warmup) * args.warmup  # log lines fall on the warmup boundary and the end
    return args


# --------------------------------------------------------------------------- worker (under torchrun)
def _rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def worker(args: argparse.Namespace) -> None:
    import torch.distributed as dist

    from simclr_lite import distributed as D
    from simclr_lite.config import Config
    from simclr_lite.train import pretrain

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rss_start = _rss_mib()
    steps_total = args.warmup + args.steps
    g = torch.Generator().manual_seed(0)  # the same synthetic set on every rank
    n_train = args.per_proc_batch * world * steps_total
    train_x = torch.randint(0, 256, (n_train, 3, args.image_size, args.image_size), dtype=torch.uint8, generator=g)
    train_y = torch.randint(0, 10, (n_train,), generator=g)
    test_x, test_y = train_x[:64].clone(), train_y[:64].clone()
    stream = args.loader == "stream"
    cfg = Config(arch=args.arch, width=args.width, cifar_stem=bool(args.cifar_stem), stem_stride=args.stem_stride,
                 image_size=args.image_size, strength=args.strength, blur=bool(args.blur), epochs=1,
                 batch_size=args.per_proc_batch * world, optimizer="lars", lr=0.3, warmup_epochs=0,
                 temperature=0.1, knn_every=0, knn_k=5, log_every=args.warmup, device=args.device,
                 amp=args.amp, sync_bn=args.sync_bn, threads=args.threads if args.device == "cpu" else 0,
                 seed=0, loader=args.loader, workers=args.workers, data=args.data)
    if args.device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.reset_peak_memory_stats()
    summary = pretrain(cfg, out=None, progress=False,
                       data=None if stream else (train_x, train_y, test_x, test_y))
    steps = [r for r in summary["history"] if r["kind"] == "step"]
    t = {r["step"]: r["time_s"] for r in steps}
    seconds = t[steps_total] - t[args.warmup]
    mine: dict[str, Any] = {"rank": int(os.environ.get("RANK", "0")), "peak_rss_mib": _rss_mib(),
                            "rss_at_start_mib": rss_start,
                            "synthetic_data_mib": 0.0 if stream else round(train_x.numel() / 2**20, 1)}
    if args.device == "cuda":
        mine.update(peak_gpu_allocated_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2),
                    peak_gpu_reserved_gib=round(torch.cuda.max_memory_reserved() / 2**30, 2))
    per_rank = [mine]
    if dist.is_initialized():
        per_rank = [None] * world  # type: ignore[list-item]
        dist.all_gather_object(per_rank, mine)
    if int(os.environ.get("RANK", "0")) == 0:
        Path(args.result).write_text(json.dumps({
            "nproc": world, "global_batch": cfg.batch_size, "timed_steps": args.steps,
            "timed_seconds": round(seconds, 3), "images_per_s": round(cfg.batch_size * args.steps / seconds, 2),
            "step_time_s": round(seconds / args.steps, 4), "device": summary["device"],
            "per_rank": per_rank}))
    D.cleanup()


# --------------------------------------------------------------------------- driver
def _jpeg_tree(root: Path, n: int, side: int) -> Path:
    """``n`` training JPEGs (and 10 test ones) in 10 class folders: smooth noise, quality 90."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", n), ("test", 10)):
        for i in range(count):
            small = rng.integers(0, 256, (side // 8 + 1, side // 8 + 1, 3), dtype=np.uint8)
            img = Image.fromarray(small).resize((side, side), Image.BILINEAR)
            folder = root / split / f"c{i % 10}"
            folder.mkdir(parents=True, exist_ok=True)
            img.save(folder / f"{i:06d}.jpg", quality=90)
    return root


def launch(args: argparse.Namespace, nproc: int, result: Path) -> dict[str, Any]:
    forwarded = ["--device", args.device, "--arch", args.arch, "--width", str(args.width),
                 "--image-size", str(args.image_size), "--per-proc-batch", str(args.per_proc_batch),
                 "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads),
                 "--amp", args.amp, "--sync-bn", args.sync_bn, "--cifar-stem", str(int(args.cifar_stem)),
                 "--stem-stride", str(args.stem_stride), "--strength", str(args.strength),
                 "--blur", str(int(args.blur)), "--loader", args.loader, "--workers", str(args.workers)]
    if args.loader == "stream":
        forwarded += ["--data", str(args.data)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(Path(__file__).resolve()), "--worker", "--result", str(result), *forwarded]
    env = {**os.environ, "PYTHONPATH": str(C.REPO), "PYTHONUNBUFFERED": "1"}
    if args.device == "cpu":
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    t0 = time.time()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout, check=False)
    if p.returncode != 0 or not result.exists():
        sys.exit(f"error: the {nproc}-process run failed (exit {p.returncode}):\n{p.stderr[-4000:]}")
    rec = json.loads(result.read_text())
    rec["launch_wall_s"] = round(time.time() - t0, 1)
    return rec


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.worker:
        worker(args)
        return 0
    device = torch.device(args.device)
    if args.device == "cuda":
        n_gpu = torch.cuda.device_count()
        counts = [int(c) for c in args.nproc.split(",")] if args.nproc else [c for c in (1, 2, 4, 8) if c <= n_gpu]
        if max(counts) > n_gpu:
            sys.exit(f"error: --nproc {max(counts)} needs {max(counts)} GPUs, {n_gpu} visible")
    else:
        counts = [int(c) for c in (args.nproc or "1,2").split(",")]
    info = C.machine(device)
    C.warn_if_busy(device)
    settings = {k: getattr(args, k) for k in ("device", "arch", "width", "image_size", "cifar_stem", "stem_stride",
                                              "strength", "blur", "per_proc_batch", "steps", "warmup", "threads",
                                              "amp")}
    settings.update(optimizer="lars", loss="nt_xent (global batch)",
                    sync_bn=args.sync_bn + (" (global BN when N > 1)" if args.sync_bn == "auto" else ""),
                    data="synthetic uint8 images on the device", scaling="weak: per-process batch fixed")
    if args.device == "cuda":
        settings.pop("threads")
    if args.loader == "stream":
        settings.update(data=f"synthetic JPEG tree ({args.source_size or round(1.5 * args.image_size)} px), decoded "
                             f"by {args.workers} DataLoader workers per process", workers=args.workers)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.loader == "stream":
            args.data = _jpeg_tree(Path(tmp) / "tree", args.per_proc_batch * max(counts) * (args.warmup + args.steps),
                                   args.source_size or round(1.5 * args.image_size))
        runs = [(n, args.sync_bn) for n in counts]
        if args.also_local_bn:
            runs += [(n, "off") for n in counts if n > 1 and args.sync_bn != "off"]
        for n, sync_bn in runs:
            run_args = argparse.Namespace(**{**vars(args), "sync_bn": sync_bn})
            rec = launch(run_args, n, Path(tmp) / f"n{n}-{sync_bn}.json")
            rec["sync_bn"] = sync_bn
            results.append(rec)
            mem = ", ".join(f"{r['peak_gpu_allocated_gib']} GiB" if "peak_gpu_allocated_gib" in r
                            else f"{r['peak_rss_mib']:.0f} MiB" for r in rec["per_rank"])
            print(f"{n} process(es), sync BN {sync_bn}: {rec['images_per_s']:.1f} images/s (global batch "
                  f"{rec['global_batch']}, {rec['step_time_s'] * 1e3:.0f} ms/step), peak memory per process: "
                  f"{mem}", flush=True)
    base = next((r for r in results if r["nproc"] == 1), None)
    ratios = {}
    if base is not None:
        for r in results:
            if r["nproc"] > 1:
                speedup = r["images_per_s"] / base["images_per_s"]
                key = str(r["nproc"]) + ("" if r["sync_bn"] == args.sync_bn else f"-sync-bn-{r['sync_bn']}")
                ratios[key] = {"speedup_vs_1": round(speedup, 3), "efficiency": round(speedup / r["nproc"], 3)}
                print(f"{r['nproc']} (sync BN {r['sync_bn']}) vs 1 process(es): x{speedup:.2f} images/s, "
                      f"scaling efficiency {speedup / r['nproc']:.0%}")
    info["load_average_1min_at_end"] = C.load_average()
    C.write_result("distributed" + ("-stream" if args.loader == "stream" else ""), device, {"what": " ".join(" ".join(__doc__.split("\n\n")[:4]).split()),
                                           "settings": settings, "results": results, "ratios": ratios},
                   out=args.out, machine_info=info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
