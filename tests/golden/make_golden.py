"""Writes the golden files in tests/golden/: stored outputs of the test oracles that used to be code.

The tests compared the package with frozen copies of older code (``tests/augment_v1.py``, 279 lines, and
``knn_predict_reference`` in ``tests/test_evaluate.py``; ``benchmarks/bench_knn.py`` held a third copy).
Those copies are gone; their outputs on small fixed inputs are stored here instead, with the inputs.

How they were made (once; rerun only to extend a case, and say so here):

    python tests/golden/make_golden.py --commit c0d87ce

on 2026-12-06, torch 2.14.1 (CPU build), on an AMD EPYC with AVX-512 (torch's CPU capability AVX512).
The oracles are read from commit c0d87ce with ``git show`` (the last commit that has them), so the script
runs in a checkout where they are deleted:

* ``augment_views.npz``: ``tests/augment_v1.py`` of c0d87ce, a frozen copy of ``SimCLRAugment``'s code as
  of commit 755e543 (before the fused colour steps). For each case (strength, blur, input size, output
  size, crop scale, seed): the uint8 input images, and the float32 views
  ``simclr_augment_v1(images, ..., generator=torch.Generator().manual_seed(seed))`` on the CPU. Also one
  ``color_jitter`` case (float32 images in, float32 out) and the number of kernels per view of the old code
  on the GPU code path (aten ops counted on ``meta`` tensors, batch 512, 32 x 32).
* ``knn_scores.npz``: ``knn_predict_reference`` of ``tests/test_evaluate.py`` at c0d87ce (normalise, one
  matmul per chunk, full ``topk``, weighted votes), on int8 features stored with it: clustered features
  for several (k, chunk size) pairs, integer features with duplicates (exact ties), and NaN / inf
  features. Only queries whose k nearest neighbours are unambiguous are kept: the k-th and (k+1)-th
  similarities (float64) differ by more than 1e-5, or the tied features share one label, so float
  rounding on another CPU (AVX2 or AVX-512 kernels, another BLAS) cannot change which labels vote.

Inputs are stored rather than regenerated, so the files do not depend on a random generator's stream
(float noise drawn on another CPU may round to other uint8 values). The script checks, where it runs,
that the current package reproduces every stored output (bit for bit on the CPU that made them), and that
the files stay small (< 600 kB in all).
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
AUGMENT_CASES = [   # strength, blur, (H, W) of the input, output size, crop scale, seed (the old test's cases)
    (0.5, False, (32, 32), 32, (0.08, 1.0), 0),
    (1.0, True, (32, 32), 32, (0.08, 1.0), 1),
    (2.5, False, (40, 48), 24, (0.2, 1.0), 2),
    (0.0, True, (32, 32), 32, (0.08, 1.0), 0),
]
N_IMAGES = 8
JITTER = dict(brightness=(0.3, 1.7), contrast=0.9, saturation=0.0, hue=0.3, p=0.6)   # the old test's case
KNN_CASES = [   # name, k, chunk size, bank rows (0: all): the old test's shapes, scaled down
    ("clustered_k200_chunk128", 200, 128, 0),     # the monitor's k; several chunks and a partial one
    ("clustered_k20_chunk2048", 20, 2048, 0),     # one chunk
    ("clustered_k1_chunk16", 1, 16, 0),           # k = 1
    ("clustered_k200_bank50", 200, 2048, 50),     # k > N: clipped to N
]


def git_show(commit: str, path: str) -> str:
    return subprocess.run(["git", "show", f"{commit}:{path}"], cwd=REPO, check=True, capture_output=True,
                          text=True).stdout


def load_augment_v1(commit: str, folder: Path):
    (folder / "augment_v1.py").write_text(git_show(commit, "tests/augment_v1.py"))
    spec = importlib.util.spec_from_file_location("augment_v1", folder / "augment_v1.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_knn_reference(commit: str):
    """``knn_predict_reference`` alone, from the old test file (without importing the test module)."""
    source = git_show(commit, "tests/test_evaluate.py")
    node = next(n for n in ast.parse(source).body
                if isinstance(n, ast.FunctionDef) and n.name == "knn_predict_reference")
    namespace = {"torch": torch, "F": F}
    exec(compile(ast.Module([node], type_ignores=[]), "knn_predict_reference", "exec"), namespace)   # noqa: S102
    return namespace["knn_predict_reference"]


# ----------------------------------------------------------------------------- augmentation
def smooth_images(n: int, size: int, seed: int) -> torch.Tensor:
    """'Real-ish' uint8 images (tests/test_augment.py's helper): 4x4 colour noise upsampled, plus fine noise."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    x = F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    x = x + 0.05 * torch.randn(n, 3, size, size, generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def kernel_count(fn) -> int:
    """Non-view aten ops that ``fn`` dispatches: the counter of tests/test_augment.py."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from test_augment import _kernel_count
    return _kernel_count(fn)


def augment_golden(v1) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for i, (strength, blur, hw, size, scale, seed) in enumerate(AUGMENT_CASES):
        images = F.interpolate(smooth_images(N_IMAGES, 32, seed=3).float(), size=hw).round().to(torch.uint8)
        views = v1.simclr_augment_v1(images, size, strength, blur, scale, generator=torch.Generator().manual_seed(seed))
        out[f"case{i}_images"] = images.numpy()
        out[f"case{i}_views"] = views.numpy()
        out[f"case{i}_params"] = np.array([strength, float(blur), size, scale[0], scale[1], seed], dtype=np.float64)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 8, 8, generator=g)
    out["jitter_images"] = x.numpy()
    out["jitter_out"] = v1.color_jitter(x, **JITTER, generator=torch.Generator().manual_seed(4)).numpy()
    meta = torch.empty(512, 3, 32, 32, dtype=torch.uint8, device="meta")
    out["v1_kernels_per_view"] = np.array(kernel_count(lambda: v1.simclr_augment_v1(meta, 32)), dtype=np.int64)
    return out


# ----------------------------------------------------------------------------- kNN
def clustered_int8(n_train: int, n_test: int, d: int, classes: int, seed: int):
    """Integer features around one centre per class (like a trained encoder's), as int8, with labels."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randint(-6, 7, (classes, d), generator=g)
    out = []
    for n in (n_train, n_test):
        y = torch.randint(0, classes, (n,), generator=g)
        out += [(centres[y] + torch.randint(-9, 10, (n, d), generator=g)).to(torch.int8), y]
    return out


def robust_queries(xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, k: int,
                   gap: float = 1e-5, tie: float = 1e-9) -> torch.Tensor:
    """Bool (N_test,): queries whose votes cannot change with float rounding (see the module docstring)."""
    bank = F.normalize(xtr.float(), dim=1).double()
    q = F.normalize(xte.float(), dim=1).double()
    sim = q @ bank.T
    k = min(k, len(bank))
    keep = torch.ones(len(q), dtype=torch.bool)
    if k == len(bank):
        return keep
    for i, s in enumerate(sim):
        order = s.argsort(descending=True)
        s_k = s[order[k - 1]]
        group = (s - s_k).abs() <= tie
        if group.sum() > 1 and group[order[k:]].any():     # a tie straddles the k-th place
            if len(set(ytr[group].tolist())) > 1:
                keep[i] = False
            others = (s - s_k).abs()[~group]
            keep[i] &= bool(others.numel() == 0 or others.min() > gap)
        else:
            keep[i] = bool(s_k - s[order[k]] > gap)
    return keep


def knn_golden(reference) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    xtr, ytr, xte, yte = clustered_int8(2000, 300, 32, 10, seed=0)
    out.update(clustered_train=xtr.numpy(), clustered_train_labels=ytr.numpy(),
               clustered_test=xte.numpy(), clustered_test_labels=yte.numpy())
    for name, k, chunk, rows in KNN_CASES:
        bank, labels = (xtr[:rows], ytr[:rows]) if rows else (xtr, ytr)
        keep = robust_queries(bank, labels, xte, k)
        scores = reference(bank.float(), labels, xte.float(), k=k, temperature=0.1, num_classes=10,
                           chunk_size=chunk)
        top2 = scores.topk(2, dim=1).values
        keep &= (top2[:, 0] - top2[:, 1]) > 1e-4 * top2[:, 0]          # an unambiguous prediction too
        out[f"{name}_queries"] = keep.nonzero().squeeze(1).numpy()
        out[f"{name}_scores"] = scores[keep].numpy()
        out[f"{name}_params"] = np.array([k, chunk, rows], dtype=np.int64)
        print(f"knn {name}: {int(keep.sum())} of {len(keep)} queries kept")
    # duplicates and exact ties: few distinct integer directions; a duplicate keeps its original's label
    g = torch.Generator().manual_seed(1)
    base = torch.randint(-2, 3, (600, 6), generator=g)
    base_y = torch.randint(0, 5, (600,), generator=g)
    ties_x = torch.cat([base, base[:300], base[:100]]).to(torch.int8)
    ties_y = torch.cat([base_y, base_y[:300], base_y[:100]])
    ties_q = torch.randint(-2, 3, (200, 6), generator=g).to(torch.int8)
    out.update(ties_train=ties_x.numpy(), ties_train_labels=ties_y.numpy(), ties_test=ties_q.numpy())
    for k in (1, 7, 50, 200):
        keep = robust_queries(ties_x, ties_y, ties_q, k)
        scores = reference(ties_x.float(), ties_y, ties_q.float(), k=k, num_classes=5)
        out[f"ties_k{k}_queries"] = keep.nonzero().squeeze(1).numpy()
        out[f"ties_k{k}_scores"] = scores[keep].numpy()
        print(f"knn ties k={k}: {int(keep.sum())} of {len(keep)} queries kept")
    # non-finite features: a NaN in the bank (its similarity is NaN: topk puts it first), an inf in a query
    xtr_nf, xte_nf = xtr[:, :16].float(), xte[:64, :16].float()
    xtr_nf[7, 3], xte_nf[5, 0] = float("nan"), float("inf")
    nf = reference(xtr_nf, ytr, xte_nf, k=50, num_classes=10)
    others = torch.arange(len(xtr)) != 7                               # row 7 takes one of the 50 places
    keep = robust_queries(xtr[others, :16], ytr[others], xte_nf.nan_to_num(posinf=0.0), 49)
    keep[5] = False                                                     # its scores: see the test
    out["nonfinite_queries"] = keep.nonzero().squeeze(1).numpy()
    out["nonfinite_scores"] = nf[keep].numpy()
    return out


# ----------------------------------------------------------------------------- check and write
def check_with_package(aug: dict[str, np.ndarray], knn: dict[str, np.ndarray]) -> None:
    """The package reproduces the stored outputs here (the CPU that made them): bit for bit."""
    sys.path.insert(0, str(REPO))
    from simclr_lite import augment as A
    from simclr_lite.evaluate import knn_predict
    for i, (strength, blur, hw, size, scale, seed) in enumerate(AUGMENT_CASES):
        views = A.SimCLRAugment(size, strength, blur, scale=scale)(
            torch.from_numpy(aug[f"case{i}_images"]), generator=torch.Generator().manual_seed(seed))
        diff = (views - torch.from_numpy(aug[f"case{i}_views"])).abs().max().item()
        print(f"augment case {i}: package vs golden max |diff| {diff:.3g}")
        assert diff <= 1e-6, diff
    jit = A.color_jitter(torch.from_numpy(aug["jitter_images"]), **JITTER, generator=torch.Generator().manual_seed(4))
    assert (jit - torch.from_numpy(aug["jitter_out"])).abs().max() <= 1e-6
    xtr, ytr = torch.from_numpy(knn["clustered_train"]), torch.from_numpy(knn["clustered_train_labels"])
    xte = torch.from_numpy(knn["clustered_test"])
    for name, k, chunk, rows in KNN_CASES:
        bank, labels = (xtr[:rows], ytr[:rows]) if rows else (xtr, ytr)
        scores = knn_predict(bank.float(), labels, xte.float(), k=k, num_classes=10, chunk_size=chunk)
        assert torch.equal(scores[torch.from_numpy(knn[f"{name}_queries"])], torch.from_numpy(knn[f"{name}_scores"]))
    print("the package reproduces every stored output on this machine")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commit", default="c0d87ce", help="the commit whose oracles are used")
    ap.add_argument("--out", default=str(HERE), help="folder for the .npz files (default: tests/golden)")
    ap.add_argument("--no-check", action="store_true", help="do not compare with the current package")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        aug = augment_golden(load_augment_v1(args.commit, Path(tmp)))
    knn = knn_golden(load_knn_reference(args.commit))
    if not args.no_check:
        check_with_package(aug, knn)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "augment_views.npz", **aug)
    np.savez_compressed(out / "knn_scores.npz", **knn)
    sizes = {f.name: f.stat().st_size for f in (out / "augment_views.npz", out / "knn_scores.npz")}
    print("wrote", ", ".join(f"{k} ({v / 1e3:.0f} kB)" for k, v in sizes.items()))
    assert sum(sizes.values()) < 600e3, sizes
    return 0


if __name__ == "__main__":
    sys.exit(main())
