"""NT-Xent benchmark: forward + backward of ``simclr_lite.losses.nt_xent`` against lightly's ``NTXentLoss``.

Measures, for N pairs of d = 128 float32 projections (N = 256 ... 8192 on a
GPU, 256 ... 2048 on a CPU), the time of one forward + backward of
``nt_xent`` divided by lightly 1.6's ``NTXentLoss`` (target <= 1) and by a
lower bound made of the same (2N x 2N) matrix product plus one
``F.cross_entropy`` (target <= 1.5), and the peak memory of one forward +
backward at N = 8192 (GPU; 2048 on a CPU) against lightly's (target: no
more). A fourth row times the PREVIOUS ``nt_xent`` (before 1/tau was folded
into the matmul and the diagonal masked in place), so each run shows what
that change buys.
The contenders run interleaved, one call each in turn.

Memory: on a GPU, ``torch.cuda.max_memory_allocated`` above the inputs; on
a CPU, the peak RSS growth (VmHWM, reset first) of one forward + backward in
a fresh subprocess.

Result on 2 cores of an AMD EPYC (KVM; load ~1.2), ``--sizes
256,512,1024,2048,4096,8192 --memory-n 8192``: ours / lightly 0.44-0.55x
(N = 8192: 7.4 s vs 16.8 s), ours / bound 1.00-1.16x, peak memory at
N = 8192 3,103 MiB vs lightly's 4,302 MiB (bound 3,087 MiB): all three
targets met (benchmarks/README.md). Before the change: ours / lightly 0.57-0.74x, ours /
bound 1.28-1.47x, while the then-proposed variant (now the package's) ran at
1.03-1.20x of the bound.

Prints each time and the ratios measured side by side in this run; writes
``benchmarks/results/loss-<device-slug>.json``.

    python benchmarks/bench_loss.py                # CPU or GPU (auto)
    BENCH_QUICK=1 python benchmarks/bench_loss.py  # tiny sizes: checks the script runs
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import _common as C
import torch
import torch.nn.functional as F

from simclr_lite.losses import nt_xent

TEMPERATURE = 0.5


# ----------------------------------------------------------------------------- the contenders
def lightly_ntxent():
    """lightly's NTXentLoss, or a labelled copy of its in-batch branch when lightly is not installed."""
    try:
        from lightly.loss import NTXentLoss
        return NTXentLoss(temperature=TEMPERATURE), "lightly.loss.NTXentLoss (lightly installed)"
    except Exception:  # noqa: BLE001 (lightly missing, or missing one of its dependencies)
        return _LightlyNTXentCopy(TEMPERATURE), ("copy of lightly 1.6.0 NTXentLoss (in-batch branch, "
                                                 "single process), lightly not importable")


class _LightlyNTXentCopy(torch.nn.Module):
    """lightly 1.6.0 ``lightly/loss/ntx_ent_loss.py``, ``NTXentLoss.forward`` without a memory bank,
    single process: copied so the comparison runs without lightly (same ops, same order)."""

    def __init__(self, temperature: float = 0.5):
        super().__init__()
        self.temperature = temperature
        self.cross_entropy = torch.nn.CrossEntropyLoss(reduction="mean")

    def forward(self, out0: torch.Tensor, out1: torch.Tensor) -> torch.Tensor:
        device = out0.device
        batch_size, _ = out0.shape
        out0 = torch.nn.functional.normalize(out0, dim=1)
        out1 = torch.nn.functional.normalize(out1, dim=1)
        out0_large, out1_large = out0, out1
        diag_mask = torch.eye(batch_size, device=out0.device, dtype=torch.bool)
        logits_00 = torch.einsum("nc,mc->nm", out0, out0_large) / self.temperature
        logits_01 = torch.einsum("nc,mc->nm", out0, out1_large) / self.temperature
        logits_10 = torch.einsum("nc,mc->nm", out1, out0_large) / self.temperature
        logits_11 = torch.einsum("nc,mc->nm", out1, out1_large) / self.temperature
        logits_00 = logits_00[~diag_mask].view(batch_size, -1)
        logits_11 = logits_11[~diag_mask].view(batch_size, -1)
        logits_0100 = torch.cat([logits_01, logits_00], dim=1)
        logits_1011 = torch.cat([logits_10, logits_11], dim=1)
        logits = torch.cat([logits_0100, logits_1011], dim=0)
        labels = torch.arange(batch_size, device=device, dtype=torch.long).repeat(2)
        return self.cross_entropy(logits, labels)


def lower_bound(z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
    """The same (2N x 2N) matrix product and one cross-entropy, nothing else (no normalising, no mask)."""
    z = torch.cat([z_a, z_b])
    n = z_a.shape[0]
    target = torch.cat([torch.arange(n, 2 * n, device=z.device), torch.arange(n, device=z.device)])
    return F.cross_entropy(z @ z.T, target)


def nt_xent_previous(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """``nt_xent`` as it was before (commit b7e90d3): (2N x 2N) similarities divided by tau, then the
    diagonal masked into a copy with ``index_put``. Kept as this benchmark's baseline for the change."""
    z = F.normalize(torch.cat([z_a, z_b]).float(), dim=1)
    n = z_a.shape[0]
    logits = (z @ z.T) / temperature
    rows = torch.arange(2 * n, device=z.device)
    logits = logits.index_put((rows, rows), torch.tensor(torch.finfo(logits.dtype).min, device=z.device))
    target = torch.cat([torch.arange(n, 2 * n, device=z.device), torch.arange(n, device=z.device)])
    return F.cross_entropy(logits, target)


def contenders():
    lightly_fn, lightly_label = lightly_ntxent()
    return {
        "simclr_lite.nt_xent": (lambda a, b: nt_xent(a, b, TEMPERATURE), "simclr_lite.losses.nt_xent"),
        "lightly.NTXentLoss": (lambda a, b: lightly_fn(a, b), lightly_label),
        "lower_bound": (lower_bound, "same matmul + one F.cross_entropy (no normalise, no mask)"),
        "nt_xent_previous": (nt_xent_previous, "PREVIOUS nt_xent: (2N x 2N) division by tau, masked copy"),
    }


def inputs(n: int, d: int, device: torch.device, seed: int = 0):
    g = torch.Generator(device=device).manual_seed(seed)
    z_a = torch.randn(n, d, device=device, generator=g).requires_grad_()
    z_b = torch.randn(n, d, device=device, generator=g).requires_grad_()
    return z_a, z_b


def fwd_bwd(fn, z_a, z_b):
    z_a.grad = z_b.grad = None
    loss = fn(z_a, z_b)
    loss.backward()
    return loss


# ----------------------------------------------------------------------------- memory
def peak_memory_cuda(fn, n: int, d: int, device: torch.device) -> int:
    z_a, z_b = inputs(n, d, device)
    fwd_bwd(fn, z_a, z_b)                  # warm-up: cuBLAS workspace etc.
    z_a.grad = z_b.grad = None
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fwd_bwd(fn, z_a, z_b)
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _memory_child(name: str, n: int, d: int) -> None:
    """Run in a fresh process: peak RSS growth (bytes) of one forward + backward, printed as JSON.

    The kernel's peak-RSS mark (VmHWM) is reset by writing 5 to /proc/self/clear_refs just
    before the call, so import-time peaks do not hide the loss's own.
    """
    fn, _ = contenders()[name]
    small_a, small_b = inputs(64, d, torch.device("cpu"))
    fwd_bwd(fn, small_a, small_b)          # load kernels and allocator state first
    z_a, z_b = inputs(n, d, torch.device("cpu"))
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_kib("VmRSS")
    fwd_bwd(fn, z_a, z_b)
    peak = _status_kib("VmHWM")
    print(json.dumps({"peak_bytes": max(0, peak - before) * 1024}))


def peak_memory_cpu(name: str, n: int, d: int) -> int | None:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_memory-child", name, str(n), str(d)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True).stdout
        return int(json.loads(out.strip().splitlines()[-1])["peak_bytes"])
    except (subprocess.SubprocessError, ValueError, KeyError, IndexError) as e:
        print(f"  [memory of {name} failed: {e}]")
        return None


# ----------------------------------------------------------------------------- main
def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--_memory-child":
        _memory_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--sizes", default=None, help="N, pairs per batch (default: 256,...,8192 on a GPU; "
                    "256,...,2048 on a CPU, where one fwd+bwd at N=8192 takes 7-17 s on 2 cores)")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--memory-n", type=int, default=None,
                    help="N at which peak memory is compared (default: 8192 on a GPU, 2048 on a CPU)")
    ap.add_argument("--out", default=None, help="results folder (default: $OUT or benchmarks/results)")
    args = ap.parse_args()
    dev = C.pick_device(args.device)
    gpu = dev.type == "cuda"
    sizes = [int(s) for s in (args.sizes or ("256,512,1024,2048,4096,8192" if gpu else "256,512,1024,2048"))
             .split(",")]
    args.memory_n = args.memory_n or (8192 if gpu else 2048)
    if C.QUICK:
        sizes, args.memory_n = [64, 256], 256
    info = C.machine(dev)
    C.warn_if_busy(dev)
    fns = contenders()
    print(f"NT-Xent forward+backward, d={args.dim}, tau={TEMPERATURE}, float32 on {C.device_name(dev)}")
    print(f"  lightly: {fns['lightly.NTXentLoss'][1]}", flush=True)

    # the variants agree (same loss value and gradients)
    z_a, z_b = inputs(256, args.dim, dev)
    ref = fwd_bwd(fns["simclr_lite.nt_xent"][0], z_a, z_b).item()
    agree = {}
    for name in ("lightly.NTXentLoss", "nt_xent_previous"):
        ga = z_a.grad.clone()
        val = fwd_bwd(fns[name][0], z_a, z_b).item()
        agree[name] = bool(abs(val - ref) < 1e-5 * max(1, abs(ref)) and torch.allclose(z_a.grad, ga, atol=1e-6))
        fwd_bwd(fns["simclr_lite.nt_xent"][0], z_a, z_b)
    print(f"  same loss and gradients as nt_xent: {agree}")

    table = {}
    head = f"  {'N':>6s} " + " ".join(f"{k:>22s}" for k in fns) + "   ours/lightly  ours/bound  previous/bound"
    print(head)
    for n in sizes:
        z_a, z_b = inputs(n, args.dim, dev)
        big = dev.type == "cpu" and n >= 4096
        row = C.timeit_many({name: (lambda fn=fn, a=z_a, b=z_b: fwd_bwd(fn, a, b)) for name, (fn, _) in fns.items()},
                            dev,
                            reps=(2 if big else 7 if n >= 2048 else 15 if n >= 1024 else 31) if dev.type == "cpu" else 30,
                            warmup=1 if dev.type == "cpu" else 5, max_seconds=25 if dev.type == "cpu" else None)
        t = {k: v["median_s"] for k, v in row.items()}
        ratios = {"ours_over_lightly": t["simclr_lite.nt_xent"] / t["lightly.NTXentLoss"],
                  "ours_over_lower_bound": t["simclr_lite.nt_xent"] / t["lower_bound"],
                  "previous_over_lower_bound": t["nt_xent_previous"] / t["lower_bound"],
                  "ours_over_previous": t["simclr_lite.nt_xent"] / t["nt_xent_previous"]}
        table[n] = {"times": row, "ratios": {k: round(v, 3) for k, v in ratios.items()}}
        print(f"  {n:6d} " + " ".join(f"{C.fmt_s(t[k]):>22s}" for k in fns)
              + f"   {ratios['ours_over_lightly']:11.2f}x {ratios['ours_over_lower_bound']:10.2f}x"
              f" {ratios['previous_over_lower_bound']:14.2f}x", flush=True)
        del z_a, z_b

    mem = {}
    for name, (fn, _) in fns.items():
        mem[name] = (peak_memory_cuda(fn, args.memory_n, args.dim, dev) if dev.type == "cuda"
                     else peak_memory_cpu(name, args.memory_n, args.dim))
    print(f"  peak memory of one forward+backward at N={args.memory_n} "
          f"({'max_memory_allocated above inputs' if dev.type == 'cuda' else 'RSS growth in a fresh process'}):")
    for name, b in mem.items():
        print(f"    {name:22s} {'n/a' if b is None else f'{b / 2**20:8.0f} MiB'}")

    ours_lightly = [table[n]["ratios"]["ours_over_lightly"] for n in sizes]
    ours_bound = [table[n]["ratios"]["ours_over_lower_bound"] for n in sizes]
    m_ours, m_lightly = mem["simclr_lite.nt_xent"], mem["lightly.NTXentLoss"]
    targets = {
        "no_slower_than_lightly": {"met": all(r <= 1.0 for r in ours_lightly), "worst_ratio": max(ours_lightly)},
        "within_1.5x_of_lower_bound": {"met": all(r <= 1.5 for r in ours_bound), "worst_ratio": max(ours_bound)},
        "memory_no_more_than_lightly": {"met": None if None in (m_ours, m_lightly) else m_ours <= m_lightly,
                                        "ours_mib": None if m_ours is None else round(m_ours / 2**20),
                                        "lightly_mib": None if m_lightly is None else round(m_lightly / 2**20)},
    }
    for k, v in targets.items():
        print(f"  target {k}: {'MET' if v['met'] else ('n/a' if v['met'] is None else 'MISSED')} {v}")

    C.write_result("loss", dev, {
        "settings": {"sizes_n": sizes, "dim": args.dim, "temperature": TEMPERATURE, "dtype": "float32",
                     "memory_n": args.memory_n, "timing": "median of timed fwd+bwd calls after warm-up",
                     "memory_method": ("cuda max_memory_allocated above inputs" if dev.type == "cuda"
                                       else "peak RSS growth of one fwd+bwd in a fresh subprocess")},
        "contenders": {k: v[1] for k, v in fns.items()},
        "agree_with_nt_xent": agree,
        "results": {str(n): v for n, v in table.items()},
        "peak_memory_bytes": mem,
        "targets": targets,
    }, args.out, machine_info=info)


if __name__ == "__main__":
    main()
