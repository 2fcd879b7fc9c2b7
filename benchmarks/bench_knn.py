"""kNN monitor benchmark: SimCLR's weighted kNN (k=200, t=0.1) over 50,000 train and 10,000 test features.

Measures ``simclr_lite.evaluate.knn_accuracy``'s work (``knn_predict`` +
argmax) on 50,000 x 512 train and 10,000 x 512 test features (ResNet-18's h;
synthetic clustered features, 10 classes), side by side with the plain
formulation written out below in a few lines (one similarity matrix for all
test features, 2 GB at full size, then top-k and weighted votes; scores
compared), and its two parts alone: the similarity matmuls (the floor,
5.1e11 FLOPs) and the top-k selection. (The tests compare ``knn_predict``
with stored scores: tests/golden/knn_scores.npz.)

Result on 2 cores of an AMD EPYC (KVM; load ~1.5): 7.0 s; the matmuls alone
take 5.4 s (94 GFLOP/s, ~60% of the 2-core fp32 peak) and top-k 1.2 s, so
"< 2 s on a CPU" is out of reach of 2 cores for d = 512 (it needs >= 3x this
peak). GPU machine (16 cores, and ``--device cuda``): benchmarks/README.md.

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
def knn_plain(train_features, train_labels, test_features, k=200, temperature=0.1):
    """The weighted kNN as written down (no chunks): every cosine similarity, top-k, votes exp(sim / t)."""
    sim = F.normalize(test_features.float(), dim=1) @ F.normalize(train_features.float(), dim=1).T
    top_sim, top_idx = sim.topk(min(k, len(train_features)), dim=1)
    votes = torch.zeros(len(sim), int(train_labels.max()) + 1, device=sim.device)
    return votes.scatter_add_(1, train_labels[top_idx], (top_sim / temperature).exp())


def features(n_train: int, n_test: int, dim: int, classes: int, device: torch.device):
    """Clustered features like a trained encoder's: one random centre per class plus noise."""
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(classes, dim, generator=g)
    out = []
    for n in (n_train, n_test):
        y = torch.randint(0, classes, (n,), generator=g)
        out += [(0.2 * centres[y] + torch.randn(n, dim, generator=g)).to(device), y.to(device)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu (default: the target is a CPU) / cuda / auto")
    ap.add_argument("--train", type=int, default=50_000)
    ap.add_argument("--test", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=512, help="feature size (ResNet-18's h: 512)")
    ap.add_argument("--k", type=int, default=200)
    ap.add_argument("--temperature", type=float, default=0.1)
    ap.add_argument("--reps", type=int, default=0, help="timed calls per variant (default: 5 GPU, 3 CPU)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")
    ap.add_argument("--out", default=None, help="results folder (default: $OUT or benchmarks/results)")
    args = ap.parse_args()
    if C.QUICK:
        args.train, args.test, args.dim, args.reps = 4000, 500, 64, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = C.pick_device(args.device)
    args.reps = args.reps or (5 if dev.type == "cuda" else 3)
    info = C.machine(dev)
    C.warn_if_busy(dev)
    print(f"kNN monitor: {args.train} train x {args.test} test features, d={args.dim}, k={args.k}, "
          f"t={args.temperature} on {C.device_name(dev)}", flush=True)
    xtr, ytr, xte, yte = features(args.train, args.test, args.dim, 10, dev)
    budget = 60.0 if dev.type == "cpu" else None   # seconds of timed calls (both variants)

    dev_budget = {"max_seconds": budget, "warmup": 1 if dev.type == "cuda" else 0}
    last = {}   # the scores of each variant's last timed call, compared below

    def timed(name, predict):
        def run():   # knn_accuracy's work: knn_predict, then the argmax
            last[name] = predict(xtr, ytr, xte, args.k, args.temperature)
            return (last[name].argmax(1).cpu() == yte.cpu()).float().mean().item()
        return run

    both = C.timeit_many({"package": timed("package", knn_predict), "plain": timed("plain", knn_plain)},
                         dev, reps=args.reps, **dev_budget)
    t_pkg, t_plain = both["package"], both["plain"]
    identical = bool(torch.equal(last["package"], last["plain"]))
    pkg, plain = last["package"].nan_to_num(), last["plain"].nan_to_num()
    max_rel_diff = ((pkg - plain).abs() / plain.abs().clamp_min(1e-30)).max().item()
    same_predictions = (pkg.argmax(1) == plain.argmax(1)).float().mean().item()
    acc = knn_accuracy(xtr, ytr, xte, yte, args.k, args.temperature) if C.QUICK else \
        (last["package"].argmax(1).cpu() == yte.cpu()).float().mean().item()
    last.clear()   # frees the two score matrices
    # the two parts of knn_predict's work, timed alone over the same 2048-row chunks
    bank = F.normalize(xtr, dim=1)
    q = F.normalize(xte, dim=1)
    buf = torch.empty(min(2048, len(q)), len(bank), device=dev)
    t_mm = C.timeit(lambda: [torch.mm(q[i:i + 2048], bank.T, out=buf[:len(q[i:i + 2048])])
                             for i in range(0, len(q), 2048)], dev, reps=min(args.reps, 2), **dev_budget)
    sims = [q[i:i + 2048] @ bank.T for i in range(0, min(len(q), 4096), 2048)]   # at most 2 chunks in memory
    t_topk_part = C.timeit(lambda: [s.topk(args.k, dim=1) for s in sims], dev, reps=min(args.reps, 2),
                           **dev_budget)
    t_topk = t_topk_part["median_s"] * len(q) / sum(len(s) for s in sims)
    sims.clear()

    flops = 2.0 * args.train * args.test * args.dim
    t = t_pkg["median_s"]
    print(f"  simclr_lite knn_accuracy                    {C.fmt_s(t):>10s}   (kNN top-1 on these features {acc:.4f})")
    speedup = t_plain["median_s"] / t
    print(f"  plain (one similarity matrix, no chunks)    {C.fmt_s(t_plain['median_s']):>10s}   "
          f"(knn_predict is {speedup:.2f}x faster; identical scores: {identical}, largest relative "
          f"difference {max_rel_diff:.2g}, same prediction for {same_predictions:.2%})")
    print(f"  its similarity matmuls alone                {C.fmt_s(t_mm['median_s']):>10s}   "
          f"({flops / t_mm['median_s'] / 1e9:.0f} GFLOP/s, {t_mm['median_s'] / t:.0%} of the total)")
    print(f"  its top-k selection alone (k={args.k})          {C.fmt_s(t_topk):>10s}   ({t_topk / t:.0%} of the total)")
    target = t < 2.0
    print(f"  target (< 2 s on a CPU): {'MET' if target else 'MISSED'} ({C.fmt_s(t)} on {C.device_name(dev)}"
          f"{'' if dev.type == 'cpu' else '; GPU figure, informative only'})")

    C.write_result("knn", dev, {
        "settings": {"n_train": args.train, "n_test": args.test, "dim": args.dim, "k": args.k,
                     "temperature": args.temperature, "classes": 10, "chunk_size": 2048,
                     "features": "synthetic: 0.2 x one of 10 N(0, I) class centres + N(0, I) noise, float32"},
        "results": {"knn_accuracy_s": t_pkg, "plain_s": t_plain, "speedup_vs_plain": round(speedup, 3),
                    "identical_scores": identical, "max_relative_score_difference": max_rel_diff,
                    "same_predictions": same_predictions, "matmul_only_s": t_mm, "topk_only_s_estimate": t_topk,
                    "matmul_gflops": round(flops / t_mm["median_s"] / 1e9, 1),
                    "matmul_share": round(t_mm["median_s"] / t, 3), "top1": acc},
        "targets": {"under_2s_on_cpu": {
            "text": "kNN monitor over 50,000 train and 10,000 test features in under 2 s on a CPU",
            "device_is_cpu": dev.type == "cpu", "seconds": t, "met": bool(target) if dev.type == "cpu" else None}},
    }, args.out, machine_info=info)


if __name__ == "__main__":
    main()
