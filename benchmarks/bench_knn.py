"""kNN monitor benchmark: SimCLR's weighted kNN (k=200, t=0.1) over 50,000 train and 10,000 test features.

Result (see benchmarks/README.md for the latest figures and their machines):
``simclr_lite.evaluate.knn_accuracy`` on 50,000 x 512 train and 10,000 x 512
test features (ResNet-18's h; synthetic clustered features, 10 classes) takes
~7.0 s on 2 cores of an AMD EPYC (KVM) against ~8.9 s for the plain-topk
version it replaced (1.3x), with identical scores (``torch.equal``). The floor
is the similarity matmul alone (~5 s there: 5.1e11 FLOPs, ~160 GFLOP/s peak
fp32 on 2 Zen 3 cores), so the issue's "< 2 s on a CPU" needs more cores: run
it on the GPU machine's 16 cores (``benchmarks/gpu_all.sh``), where
``--device cuda`` also times the same call on GPU-resident features.

Prints each time and the ratios measured side by side in this run; writes
``benchmarks/results/knn-<device-slug>.json``.

    python benchmarks/bench_knn.py                 # CPU, all cores (the target's setting)
    python benchmarks/bench_knn.py --device cuda   # features on the GPU
    BENCH_QUICK=1 python benchmarks/bench_knn.py   # tiny sizes: checks the script runs
"""
from __future__ import annotations

import argparse

import _common as C
import torch
import torch.nn.functional as F

from simclr_lite.evaluate import knn_accuracy, knn_predict


@torch.no_grad()
def knn_predict_before(train_features, train_labels, test_features, k=200, temperature=0.1,
                       num_classes=None, chunk_size=2048):
    """simclr_lite's knn_predict before this benchmark's change (commit e25556e): full-row topk."""
    num_classes = num_classes or int(train_labels.max()) + 1
    k = min(k, len(train_features))
    bank = F.normalize(train_features.float(), dim=1)
    labels = train_labels.to(bank.device)
    scores = []
    for i in range(0, len(test_features), chunk_size):
        q = F.normalize(test_features[i:i + chunk_size].float().to(bank.device), dim=1)
        sim = q @ bank.T
        top_sim, top_idx = sim.topk(k, dim=1)
        weights = (top_sim / temperature).exp()
        votes = torch.zeros(len(q), num_classes, device=bank.device)
        votes.scatter_add_(1, labels[top_idx], weights)
        scores.append(votes)
    return torch.cat(scores)


def features(n_train: int, n_test: int, dim: int, classes: int, device: torch.device):
    """Clustered features like a trained encoder's: one random centre per class plus noise."""
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(classes, dim, generator=g)
    out = []
    for n in (n_train, n_test):
        y = torch.randint(0, classes, (n,), generator=g)
        out += [(centres[y] + 2.0 * torch.randn(n, dim, generator=g)).to(device), y.to(device)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu (default: the target is a CPU) / cuda / auto")
    ap.add_argument("--train", type=int, default=50_000)
    ap.add_argument("--test", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=512, help="feature size (ResNet-18's h: 512)")
    ap.add_argument("--k", type=int, default=200)
    ap.add_argument("--temperature", type=float, default=0.1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")
    ap.add_argument("--out", default=None, help="results folder (default: $OUT or benchmarks/results)")
    args = ap.parse_args()
    if C.QUICK:
        args.train, args.test, args.dim, args.reps = 4000, 500, 64, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = C.pick_device(args.device)
    info = C.machine(dev)
    C.warn_if_busy(dev)
    print(f"kNN monitor: {args.train} train x {args.test} test features, d={args.dim}, k={args.k}, "
          f"t={args.temperature} on {C.device_name(dev)}", flush=True)
    xtr, ytr, xte, yte = features(args.train, args.test, args.dim, 10, dev)
    budget = 40.0 if dev.type == "cpu" else None   # seconds of timed calls per variant

    t_new = C.timeit(lambda: knn_accuracy(xtr, ytr, xte, yte, args.k, args.temperature), dev,
                     reps=args.reps, warmup=1 if dev.type == "cuda" else 0, max_seconds=budget)
    t_old = C.timeit(lambda: (knn_predict_before(xtr, ytr, xte, args.k, args.temperature).argmax(1)
                              == yte).float().mean().item(), dev,
                     reps=args.reps, warmup=1 if dev.type == "cuda" else 0, max_seconds=budget)
    bank = F.normalize(xtr, dim=1)
    q = F.normalize(xte, dim=1)
    t_mm = C.timeit(lambda: [q[i:i + 2048] @ bank.T for i in range(0, len(q), 2048)], dev,
                    reps=min(args.reps, 2), warmup=1 if dev.type == "cuda" else 0, max_seconds=budget)
    new = knn_predict(xtr, ytr, xte, args.k, args.temperature)
    old = knn_predict_before(xtr, ytr, xte, args.k, args.temperature)
    identical = bool(torch.equal(new, old))
    acc = (new.argmax(1) == yte).float().mean().item()

    flops = 2.0 * args.train * args.test * args.dim
    rows = [("simclr_lite knn_accuracy (this checkout)", t_new["median_s"]),
            ("before: plain topk (commit e25556e)", t_old["median_s"]),
            ("floor: the similarity matmuls alone", t_mm["median_s"])]
    for name, t in rows:
        print(f"  {name:45s} {C.fmt_s(t):>10s}")
    speedup = t_old["median_s"] / t_new["median_s"]
    print(f"  speed-up over the plain topk: {speedup:.2f}x; share of time in the matmul: "
          f"{t_mm['median_s'] / t_new['median_s']:.0%}; matmul {flops / t_mm['median_s'] / 1e9:.0f} GFLOP/s")
    print(f"  identical scores: {identical}; kNN top-1 on these features: {acc:.4f}")
    target = t_new["median_s"] < 2.0
    print(f"  target (< 2 s on a CPU): {'MET' if target else 'MISSED'} "
          f"({C.fmt_s(t_new['median_s'])} on {C.device_name(dev)})")

    C.write_result("knn", dev, {
        "settings": {"n_train": args.train, "n_test": args.test, "dim": args.dim, "k": args.k,
                     "temperature": args.temperature, "classes": 10, "chunk_size": 2048,
                     "features": "synthetic: 10 random class centres + N(0, 2^2) noise, float32"},
        "results": {"knn_accuracy_s": t_new, "before_plain_topk_s": t_old, "matmul_only_s": t_mm,
                    "speedup_vs_before": round(speedup, 3),
                    "matmul_gflops": round(flops / t_mm["median_s"] / 1e9, 1),
                    "identical_scores": identical, "top1": acc},
        "target": {"text": "kNN monitor over 50,000 train and 10,000 test features in under 2 s on a CPU",
                   "device_is_cpu": dev.type == "cpu", "met": bool(target and dev.type == "cpu")},
    }, args.out, machine_info=info)


if __name__ == "__main__":
    main()
