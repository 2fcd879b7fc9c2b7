"""The book at full scale: one command per chapter runs its key experiments on one GPU in at most 9 minutes.

ResNet-18 (CIFAR stem), all 50,000 CIFAR-10 training images, batch 512 (the
``cifar10-gpu`` preset) unless the experiment varies it; each run trains for
its share of the chapter's training time (``time_budget``: the cosine schedule
ends when it is up) and is scored with the kNN monitor (k = 200, all 10,000
test images). Writes ``book/results/gpu/chNN.json``: device, commit, torch,
wall time, and for each run its name, full config, wall time, epochs, kNN
top-1, images/s and peak GPU memory (chapter 4: kNN and linear evaluation on h and z
of every head, and t-SNE silhouettes). The chapters show it beside their ``cpu``
result and the paper's number when the file exists.

    python scripts/book_gpu.py --chapter 4                       # one H200: <= 9 minutes
    python scripts/book_gpu.py --chapter 4 --quick --data DIR    # tiny settings on a CPU: seconds (tests)

``--data``: a CIFAR-10 root or a folder with ``train/`` and ``test/``
(default: ``$SIMCLR_DATA``, else ``data/``).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:       # run as a script from a checkout: this checkout's simclr_lite
    sys.path.insert(0, str(REPO))
COMMON = REPO / "benchmarks" / "_common.py"   # the commit rule and the path scrubbing of every result
LIMIT_S = 9 * 60          # the promise: a chapter in at most 9 minutes on one H200
TRAIN_MINUTES = 6.5       # training time shared by a chapter's runs; the rest is start-up, data and evaluation
QUICK_BASE = dict(arch="resnet10", width=0.125, stem_stride=2, batch_size=32, epochs=1, lr=1.0, warmup_epochs=0,
                  train_limit=128, test_limit=64, knn_k=20, log_every=2, device="cpu", compile=False)

#: chapter -> (what it shows at full scale, [(run name, config overrides)], extra evaluations)
CHAPTERS: dict[int, tuple[str, list[tuple[str, dict[str, Any]]], tuple[str, ...]]] = {
    1: ("SimCLR in one picture: a trained encoder against raw pixels and a random encoder (kNN)",
        [("simclr", {})], ("pixels_knn", "random_encoder_knn")),
    2: ("Augmentations: colour distortion strength s (Table 1)",
        [("strength_0", {"strength": 0.0}), ("strength_0.5", {"strength": 0.5}), ("strength_1", {"strength": 1.0})],
        ()),
    3: ("NT-Xent: temperature (Table 5)",
        [("tau_0.1", {"temperature": 0.1}), ("tau_0.2", {"temperature": 0.2}), ("tau_0.5", {"temperature": 0.5})],
        ()),
    4: ("Projection head: nonlinear / linear / none (Fig. 8), kNN and linear evaluation on h and z; t-SNE (B.4)",
        [("head_nonlinear", {}), ("head_linear", {"head": "linear"}), ("head_none", {"head": "none"})],
        ("h_and_z", "tsne")),
    5: ("Batch size and optimiser (Fig. 9, B.1): LARS at 256 / 512 / 1024, SGD with momentum at 512",
        [("lars_256", {"batch_size": 256}), ("lars_512", {}), ("lars_1024", {"batch_size": 1024}),
         ("sgd_512", {"optimizer": "sgd", "lr": 0.3})], ()),
    6: ("Evaluation (Sec. 2.3): kNN and linear evaluation of one encoder",
        [("simclr", {})], ("linear_eval",)),
    7: ("Scaling on one GPU: batch 512 / 1024 / 2048, images/s and memory",
        [("batch_512", {}), ("batch_1024", {"batch_size": 1024}), ("batch_2048", {"batch_size": 2048})], ()),
}


def _train_api():
    """What this script uses of the package: ``preset``, ``Config``, ``build_model`` (simclr_lite.config),
    ``pretrain`` (simclr_lite.train), ``describe_device`` (simclr_lite.distributed), ``subset_indices``
    (simclr_lite.sampling), each from the module that defines it."""
    from types import SimpleNamespace

    from simclr_lite.config import Config, build_model, preset
    from simclr_lite.distributed import describe_device
    from simclr_lite.sampling import subset_indices
    from simclr_lite.train import pretrain
    return SimpleNamespace(Config=Config, build_model=build_model, preset=preset, pretrain=pretrain,
                           describe_device=describe_device, subset_indices=subset_indices)


def _records():
    """``benchmarks/_common.py``, loaded from its file: the one rule for the commit a result records
    (``git_commit_now``: ``$SIMCLR_COMMIT``, else the commit, ``+dirty`` when tracked files outside the results
    folders differ from it) and for keeping machine paths out of it (``public_paths``)."""
    name = "simclr_bench_common"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, COMMON)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


def git_commit() -> str | None:
    """The commit this checkout's results are recorded under: ``benchmarks/_common.git_commit_now``."""
    return _records().git_commit_now(REPO)


def load_data(root: str | None, size: int = 32) -> tuple[torch.Tensor, ...]:
    """``(train_x, train_y, test_x, test_y)`` as uint8 / int64 tensors, decoded once for all runs."""
    from simclr_lite.data import load_dataset
    train_x, train_y, classes = load_dataset(root, True, size=size)
    test_x, test_y, _ = load_dataset(root, False, size=size, classes=classes)
    return train_x, train_y, test_x, test_y


def run_config(name: str, overrides: dict[str, Any], minutes: float, quick: bool):
    """The Config of one run: the ``cifar10-gpu`` preset (quick: tiny CPU settings) plus the overrides."""
    api = _train_api()
    if quick:
        return api.preset("cifar10-smoke", **{**QUICK_BASE, **overrides})
    fields = dict(epochs=1000, time_budget=minutes, knn_every=0, log_every=100, warmup_epochs=2)
    return api.preset("cifar10-gpu", **{**fields, **overrides})


def one_run(name: str, overrides: dict[str, Any], minutes: float, quick: bool, data) -> dict[str, Any]:
    """Train one arm; its record for the JSON (the trained model is returned separately)."""
    api = _train_api()
    cfg = run_config(name, overrides, minutes, quick)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    summary = api.pretrain(cfg, out=None, progress=False, data=data)
    wall = time.perf_counter() - t0
    images = summary["steps"] * cfg.batch_size
    return {"name": name, "overrides": overrides, "status": summary["status"], "epochs": round(summary["epochs"], 2),
            "steps": summary["steps"], "knn_top1": summary["knn_top1"], "wall_time_s": round(wall, 2),
            "train_time_s": summary["wall_time_s"], "images_per_s": round(images / max(summary["wall_time_s"], 1e-9), 1),
            "peak_memory_mib": (round(torch.cuda.max_memory_allocated() / 2**20) if torch.cuda.is_available()
                                else None),
            "config": cfg.to_dict(), "model": summary["model"]}


def eval_device(quick: bool) -> str:
    """Where the evaluations run: the GPU at full scale, the CPU in quick mode (or without one)."""
    return "cpu" if quick or not torch.cuda.is_available() else "cuda"


def subsets(data, cfg: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    """The training and test images a run used: ``data`` cut to the config's limits (quick mode)."""
    api = _train_api()
    train_x, train_y, test_x, test_y = data
    if cfg["train_limit"]:
        keep = api.subset_indices(len(train_x), cfg["train_limit"], cfg["seed"])
        train_x, train_y = train_x[keep], train_y[keep]
    if cfg["test_limit"]:
        keep = api.subset_indices(len(test_x), cfg["test_limit"], cfg["seed"] + 1)
        test_x, test_y = test_x[keep], test_y[keep]
    return train_x, train_y, test_x, test_y


def h_and_z_evaluation(model, data, k: int, quick: bool) -> dict[str, float]:
    """Chapter 4's evaluation of one run (Fig. 8): kNN (``k`` neighbours) and linear evaluation of h = f(x)
    and of z = g(h), top-1 as fractions (no head: z is h)."""
    from simclr_lite.evaluate import extract_features, knn_accuracy, linear_eval
    train_x, train_y, test_x, test_y = data
    device = eval_device(quick)
    h = [extract_features(model.encoder, x, device=device) for x in (train_x, test_x)]
    head = model.head.eval()
    with torch.no_grad():
        z = [torch.cat([head(f[i:i + 4096].to(device)).float().cpu() for i in range(0, len(f), 4096)]) for f in h]
    epochs = 5 if quick else 100
    out = {"knn_h": knn_accuracy(h[0], train_y, h[1], test_y, k=k),
           "lin_h": linear_eval(h[0], train_y, h[1], test_y, epochs=epochs)["top1"], "h_dim": h[1].shape[1]}
    if isinstance(head, torch.nn.Identity):
        out.update(knn_z=out["knn_h"], lin_z=out["lin_h"], z_dim=out["h_dim"])
    else:
        out.update(knn_z=knn_accuracy(z[0], train_y, z[1], test_y, k=k),
                   lin_z=linear_eval(z[0], train_y, z[1], test_y, epochs=epochs)["top1"], z_dim=z[1].shape[1])
    return out


def tsne_silhouettes(model, test_x: torch.Tensor, test_y: torch.Tensor, quick: bool, n: int = 2000) -> dict[str, Any]:
    """Chapter 4's t-SNE (Fig. B.4) of h and z = g(h) for ``n`` test images (the chapter's pick: a seeded
    permutation), scored by the silhouette of the 2-D map by class, as the chapter scores its own."""
    from sklearn.manifold import TSNE
    from sklearn.metrics import silhouette_score
    from simclr_lite.evaluate import extract_features
    device = eval_device(quick)
    pick = torch.randperm(len(test_x), generator=torch.Generator().manual_seed(0))[:n]
    h = extract_features(model.encoder, test_x[pick], device=device)
    with torch.no_grad():
        z = model.head.eval()(h.to(device)).float().cpu()
    out = {"images": len(pick)}
    for key, f in (("h", h), ("z", z)):
        f = torch.nn.functional.normalize(f, dim=1).numpy()
        emb = TSNE(2, perplexity=min(30.0, (len(f) - 1) / 3), init="pca", learning_rate="auto",
                   random_state=0).fit_transform(f)
        out[key] = float(silhouette_score(emb, test_y[pick].numpy()))
    return out


def extra_evaluations(names: tuple[str, ...], run: dict[str, Any], data, quick: bool) -> dict[str, Any]:
    """Chapter 1's baselines (raw pixels, a random encoder), chapter 4's t-SNE and chapter 6's linear
    evaluation, on the chapter's first run."""
    from simclr_lite.evaluate import extract_features, knn_accuracy, linear_eval
    api = _train_api()
    cfg = run["config"]
    train_x, train_y, test_x, test_y = subsets(data, cfg)
    device = eval_device(quick)
    k, out = cfg["knn_k"], {}
    if "pixels_knn" in names:
        flat = [(x.flatten(1).float() / 255).to(device) for x in (train_x, test_x)]
        out["pixels_knn"] = knn_accuracy(flat[0], train_y.to(device), flat[1], test_y.to(device), k=k)
    if "random_encoder_knn" in names:
        torch.manual_seed(cfg["seed"])
        enc = api.build_model(api.Config(**cfg)).encoder.to(device)   # where extract_features sends x
        h = [extract_features(enc, x, device=device) for x in (train_x, test_x)]
        out["random_encoder_knn"] = knn_accuracy(h[0], train_y, h[1], test_y, k=k)
    if "linear_eval" in names:
        enc = run["model"].encoder
        h = [extract_features(enc, x, device=device) for x in (train_x, test_x)]
        out["knn_on_h"] = knn_accuracy(h[0], train_y, h[1], test_y, k=k)
        out["linear_eval"] = linear_eval(h[0], train_y, h[1], test_y, epochs=5 if quick else 100)
    if "tsne" in names:
        out["tsne_silhouette"] = tsne_silhouettes(run["model"], test_x, test_y, quick)
    return out


def run_chapter(chapter: int, quick: bool, data_root: str | None,
                train_minutes: float = TRAIN_MINUTES, argv: list[str] | None = None) -> dict[str, Any]:
    """Every run of ``chapter``, sharing ``train_minutes`` of training; the results file's contents
    (``argv``: the command's arguments it records, default ``sys.argv[1:]``)."""
    if chapter not in CHAPTERS:
        raise SystemExit(f"--chapter must be one of {sorted(CHAPTERS)}, got {chapter}")
    title, runs, extras = CHAPTERS[chapter]
    t_start = time.perf_counter()
    commit = git_commit()      # at the start: edits made while the chapter runs do not relabel its results
    api = _train_api()
    data = load_data(data_root)
    minutes = train_minutes / len(runs)
    records, extra = [], {}
    for name, overrides in runs:
        rec = one_run(name, overrides, minutes, quick, data)
        model = rec.pop("model")
        if "h_and_z" in extras:
            rec["eval"] = h_and_z_evaluation(model, subsets(data, rec["config"]), rec["config"]["knn_k"], quick)
        if extras and not extra:
            extra = extra_evaluations(extras, {**rec, "model": model}, data, quick)
        records.append(rec)
        print(f"ch{chapter:02d} {name}: kNN {100 * rec['knn_top1']:.1f}% after {rec['epochs']} epochs, "
              f"{rec['wall_time_s']:.0f} s", flush=True)
        del model
    wall = time.perf_counter() - t_start
    dev = torch.device(eval_device(quick))
    result = {"chapter": chapter, "title": title, "quick": quick, "device": api.describe_device(dev),
              "commit": commit, "torch": torch.__version__,
              "finished_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "command": "python scripts/book_gpu.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "train_minutes_per_run": None if quick else round(minutes, 3), "wall_time_s": round(wall, 1),
              "limit_s": LIMIT_S, "within_limit": wall <= LIMIT_S, "train_images": len(data[0]),
              "test_images": len(data[2]), "runs": records, "extra": extra}
    return _records().public_paths(result)   # no machine paths recorded (--data DIR, --out FILE: PATH)


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chapter", type=int, required=True, help=f"one of {sorted(CHAPTERS)}")
    ap.add_argument("--quick", action="store_true", help="tiny settings on the CPU (seconds): checks the script")
    ap.add_argument("--data", default=None, help="CIFAR-10 root or a folder with train/ and test/")
    ap.add_argument("--train-minutes", type=float, default=TRAIN_MINUTES,
                    help=f"training minutes shared by the chapter's runs (default {TRAIN_MINUTES}; less: a shorter "
                         "check at full scale, e.g. in benchmarks/gpu_all.sh, written with --out elsewhere)")
    ap.add_argument("--out", default=None, help="results file (default book/results/gpu/chNN.json; "
                                                "quick: chNN-quick.json)")
    args = ap.parse_args(argv)
    if not args.quick and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here: the full-scale runs need one (use --quick to check the script on a CPU)")
    if not 0 < args.train_minutes <= TRAIN_MINUTES:
        raise SystemExit(f"--train-minutes must be in (0, {TRAIN_MINUTES}] to stay within {LIMIT_S} s, "
                         f"got {args.train_minutes}")
    result = run_chapter(args.chapter, args.quick, args.data, args.train_minutes, argv)
    from simclr_book.budget import GPU_RESULTS   # where the chapters read it (budget.gpu_results)
    out = Path(args.out) if args.out else (
        GPU_RESULTS / f"ch{args.chapter:02d}{'-quick' if args.quick else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, allow_nan=True) + "\n")
    print(f"wrote {out} ({result['wall_time_s']:.0f} s, limit {LIMIT_S} s: "
          f"{'within' if result['within_limit'] else 'OVER'})")
    return out


if __name__ == "__main__":
    main()
