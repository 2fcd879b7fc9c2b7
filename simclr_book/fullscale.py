"""Run one part of the book (:mod:`simclr_book.specs`) and write its results file; read results back.

    python -m simclr_book.fullscale ch05-fig9                  # one GPU: book/results/gpu/ch05-fig9.json
    python -m simclr_book.fullscale ch05-lr --budget smoke --out r.json    # seconds on a CPU (tests)

Every arm trains through the book's run cache (:func:`simclr_book.cache.cached_pretrain`, the same runs
the chapters load) at every seed of the part, and is scored on all the budget's test images: weighted
kNN (k = 200) and linear evaluation of h (and of z = g(h) where the part asks), or the test accuracy of
a supervised arm. The floors of every verdict (raw pixels and a random encoder, kNN and linear) are
measured on the same images. The results file holds the device, commit, torch, wall time, the plan's
estimate, every arm's numbers and config, and the verdict records of the rows the part decides
(:mod:`simclr_book.verdict`); chapters show them beside their ``cpu`` numbers
(:func:`fullscale_cell`), or the command that measures them.

Book: the Reproducing page; chapters 1-7's full-scale cells.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch

from simclr_lite.checkpoint import atomic_write

from simclr_book import cache
from simclr_book.budget import GPU_RESULTS, Budget, get_budget, load_data
from simclr_book.specs import FINDINGS, PARTS, Finding, Part, Row, command
from simclr_book.verdict import Verdict, compare, compare_gains

REPO = Path(__file__).resolve().parents[1]
FINETUNE = ((0.01, 200), (0.10, 60))     # Table 7: (label fraction, epochs) of fine-tuning and of from scratch
TSNE_IMAGES, TSNE_SEEDS, TSNE_INIT = 2000, (0, 1, 2), "random"


# ---------------------------------------------------------------------------------------- one arm
def supervised_augment(strength: float, min_scale: float):
    """Table 1's supervised augmentation: the SimCLR crop (area ``min_scale``-1) and flip, then colour
    distortion of strength ``strength`` (no colour at 0)."""
    from simclr_lite import augment as A

    def views(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = A.horizontal_flip(A.random_resized_crop(x, x.shape[-1], scale=(min_scale, 1.0), generator=generator),
                              generator=generator)
        return A.color_distortion(x, strength, generator=generator) if strength > 0 else x
    return views


def fig5_views(first: str, second: str) -> tuple[Any, Any]:
    """Fig. 5's two branches for ``pretrain(augment=...)``: transformation ``first`` then ``second`` (just
    one when they are equal) on one branch, the image itself on the other; with the cache key naming them
    (the operators' code included)."""
    from simclr_lite.augment_fig4 import OPERATORS

    def to_float(x: torch.Tensor) -> torch.Tensor:
        return x.float().div(255) if x.dtype == torch.uint8 else x.float()

    def branch(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = OPERATORS[first](to_float(x), generator=generator)
        return x if second == first else OPERATORS[second](x, generator=generator)

    def identity(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return to_float(x)

    key = f"fig5:{first}>{second}:{cache.code_fingerprint(('augment_fig4',))[:12]}"
    return (branch, identity), key


def _file_name(arm_name: str) -> str:
    """An arm's name as part of a file or folder name: ``crop>color`` -> ``crop-color``, ``w/4`` -> ``w_4``."""
    return arm_name.replace(">", "-").replace("/", "_")


def _eval_parts(h_and_z: bool, device: str, data: tuple[torch.Tensor, ...], folder: str) -> dict[str, Any]:
    """The result-cache parts of a run's kNN and linear evaluation (:func:`arm_result`, :func:`evaluate_run`)."""
    return {"h_and_z": h_and_z, "device": device, "data": cache.fingerprint(data), "run": folder}


def supervised_parts(cfg: Any, data: tuple[torch.Tensor, ...]) -> dict[str, Any]:
    """What a supervised arm's cached result depends on (:func:`simclr_book.cache.cached_result`)."""
    keep = ("arch", "width", "cifar_stem", "stem_stride", "strength", "min_scale", "epochs", "batch_size",
            "seed", "device")
    return {"kind": "supervised", "config": {k: getattr(cfg, k) for k in keep}, "data": cache.fingerprint(data)}


def _features(encoder: torch.nn.Module, data: tuple[torch.Tensor, ...], device: str) -> list[torch.Tensor]:
    from simclr_lite.evaluate import extract_features
    return [extract_features(encoder, x, device=device) for x in (data[0], data[2])]


def _knn_and_linear(feats: list[torch.Tensor], data: tuple[torch.Tensor, ...], device: str,
                    suffix: str = "") -> dict[str, float]:
    from simclr_lite.evaluate import knn_accuracy, linear_eval
    ytr, yte = data[1], data[3]
    return {f"knn{suffix}": knn_accuracy(feats[0].to(device), ytr.to(device), feats[1].to(device), yte.to(device)),
            f"linear{suffix}": linear_eval(feats[0], ytr, feats[1], yte, device=device)["top1"]}


def evaluate_model(model: torch.nn.Module, data: tuple[torch.Tensor, ...], device: str,
                   h_and_z: bool) -> dict[str, float]:
    """kNN and linear evaluation of h = f(x) and, with ``h_and_z``, of z = g(h) (no head: z is h)."""
    h = _features(model.encoder, data, device)
    out = _knn_and_linear(h, data, device)
    if h_and_z:
        head = model.head.to(device).eval()
        if isinstance(head, torch.nn.Identity):
            out.update(knn_z=out["knn"], linear_z=out["linear"])
        else:
            with torch.no_grad():
                z = [torch.cat([head(f[i:i + 4096].to(device)).float().cpu() for i in range(0, len(f), 4096)])
                     for f in h]
            out.update(_knn_and_linear(z, data, device, "_z"))
        model.head.cpu()
    return out


def finetune_metrics(encoder: torch.nn.Module, cfg: Any, data: tuple[torch.Tensor, ...],
                     device: str) -> dict[str, float]:
    """Table 7: fine-tune a copy of ``encoder`` and train a random one from scratch on 1% and 10% of the
    labels (class-balanced), the same epochs and steps each; top-1 on the test images."""
    import copy

    from simclr_lite.config import build_model
    from simclr_lite.data import label_subset
    from simclr_lite.evaluate import fine_tune
    xtr, ytr, xte, yte = data
    out = {}
    for fraction, epochs in FINETUNE:
        keep = label_subset(ytr, fraction, seed=0)
        tag = f"{round(100 * fraction)}"
        out[f"ft{tag}"] = fine_tune(copy.deepcopy(encoder), xtr[keep], ytr[keep], xte, yte, epochs=epochs,
                                    device=device)["top1"]
        torch.manual_seed(cfg.seed)
        out[f"scratch{tag}"] = fine_tune(build_model(cfg).encoder, xtr[keep], ytr[keep], xte, yte,
                                         epochs=epochs, device=device)["top1"]
        out[f"steps{tag}"] = epochs * max(1, len(keep) // 256)
    return out


def tsne_metrics(model: torch.nn.Module, data: tuple[torch.Tensor, ...], device: str) -> dict[str, Any]:
    """Appendix B.4 rebuilt: class separation of h and of z = g(h) on the same ``TSNE_IMAGES`` test images,
    in the original spaces and in 2-D t-SNE maps (Fig. B.4 of the paper shows the maps only).

    For each of ``"h"`` and ``"z"``: ``cosine_silhouette``, the silhouette by class on cosine distances in
    the original space, and ``cosine_silhouette_95``, its 2.5-97.5% range over 20 random halves of the
    images (without repeats, which distort a silhouette); ``tsne_silhouette``, the silhouette of the 2-D map
    of each t-SNE seed (``TSNE_SEEDS``); ``maps``, those maps (coordinates rounded to 0.01), so a chapter
    draws the full-scale model's maps from its results file. ``difference_95``: the range of h's minus
    z's cosine silhouette over the same halves (paired); ``labels``: the images' classes. kNN and linear
    evaluation of h and z on all the test images are the arm's ``knn`` / ``knn_z`` / ``linear`` /
    ``linear_z`` (:func:`evaluate_model`). Book: chapter 4.
    """
    import numpy as np
    from sklearn.manifold import TSNE
    from sklearn.metrics import silhouette_score

    from simclr_lite.evaluate import extract_features
    xte, yte = data[2], data[3]
    pick = torch.randperm(len(xte), generator=torch.Generator().manual_seed(0))[:TSNE_IMAGES]
    h = extract_features(model.encoder, xte[pick], device=device)     # once: only the test images are mapped
    with torch.no_grad():
        z = model.head.to(device).eval()(h.to(device)).float().cpu()
    model.head.cpu()
    y = yte[pick].numpy()
    feats = {k: torch.nn.functional.normalize(f.float(), dim=1).numpy() for k, f in (("h", h), ("z", z))}
    rng = np.random.default_rng(0)
    halves = [rng.choice(len(y), len(y) // 2, replace=False) for _ in range(20)]
    by_half = {k: [float(silhouette_score(f[i], y[i], metric="cosine")) for i in halves] for k, f in feats.items()}

    def range_95(v: Any) -> list[float]:
        return [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]
    out: dict[str, Any] = {"images": len(pick), "labels": [int(c) for c in y],
                           "difference_95": range_95(np.subtract(by_half["h"], by_half["z"]))}
    for key, f in feats.items():
        # a random start per seed: with PCA's start the seed changes nothing and every "seed" is one map
        maps = [TSNE(2, perplexity=min(30.0, (len(f) - 1) / 3), init=TSNE_INIT, learning_rate="auto",
                     random_state=s).fit_transform(f) for s in TSNE_SEEDS]
        out[key] = {"cosine_silhouette": float(silhouette_score(f, y, metric="cosine")),
                    "cosine_silhouette_95": range_95(by_half[key]),
                    "tsne_silhouette": [float(silhouette_score(m, y)) for m in maps],
                    "maps": [np.round(m, 2).tolist() for m in maps]}
    return out


def arm_result(part: Part, arm_name: str, budget: Budget, seed: int, data: tuple[torch.Tensor, ...]
               ) -> dict[str, Any]:
    """Train (or load) arm ``arm_name`` of ``part`` at ``seed`` and measure it; its record."""
    from simclr_book.plan import arm_config_at
    arm = part.arm(arm_name)
    cfg = arm_config_at(part, arm, budget, seed)
    device = budget.device
    rec: dict[str, Any] = {"arm": arm.name, "seed": seed, "kind": arm.kind, "epochs": cfg.epochs,
                           "batch_size": cfg.batch_size, "config": cfg.to_dict()}
    t0 = time.perf_counter()
    if arm.kind == "supervised":
        def compute() -> dict[str, Any]:
            from simclr_lite.config import build_model
            from simclr_lite.evaluate import fine_tune
            torch.manual_seed(seed)
            enc = build_model(cfg).encoder
            return {"top1": fine_tune(enc, data[0], data[1], data[2], data[3], epochs=cfg.epochs,
                                      batch_size=cfg.batch_size, seed=seed, device=device,
                                      augment=supervised_augment(cfg.strength, cfg.min_scale))["top1"]}
        res = cache.cached_result(f"{budget.name}-sup-{part.name}-{_file_name(arm.name)}-seed{seed}",
                                  supervised_parts(cfg, data), compute)
        rec.update(top1=float(res["top1"]), cached=res["cached"], steps=cfg.epochs * (len(data[0]) // cfg.batch_size),
                   train_s=None if res["cached"] else round(time.perf_counter() - t0, 1))
        return rec
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    run = arm_run(part, arm_name, budget, seed, data)
    rec.update(cached=run["cached"], steps=run["steps"], train_s=round(run["wall_time_s"], 1),
               images_per_s=round(run["steps"] * cfg.batch_size / max(run["wall_time_s"], 1e-9), 1),
               peak_memory_mib=(round(torch.cuda.max_memory_allocated() / 2 ** 20)
                                if torch.cuda.is_available() and not run["cached"] else None))
    folder = Path(run["folder"]).name
    model = run["model"]
    evals = _eval_parts("h_and_z" in part.evals, device, data, folder)
    rec.update({k: v for k, v in cache.cached_result(
        f"eval-{folder}", evals, lambda: evaluate_model(model, data, device, evals["h_and_z"])).items()
        if k != "cached"})
    if "finetune" in part.evals:
        rec.update({k: v for k, v in cache.cached_result(
            f"finetune-{folder}", {**evals, "finetune": FINETUNE},
            lambda: finetune_metrics(model.encoder, cfg, data, device)).items() if k != "cached"})
    if "tsne" in part.evals and arm.shared == "main":
        rec["tsne"] = {k: v for k, v in cache.cached_result(
            f"tsne-{folder}", {**evals, "tsne": [TSNE_IMAGES, TSNE_SEEDS, TSNE_INIT]},
            lambda: tsne_metrics(model, data, device)).items() if k != "cached"}
    return rec


def floors(budget: Budget, data: tuple[torch.Tensor, ...]) -> dict[str, float]:
    """The floors every decisive arm must beat: raw pixels and a random encoder of the budget's recipe,
    kNN and linear evaluation on the same images."""
    from simclr_lite.config import build_model
    from simclr_lite.evaluate import raw_pixel_features

    def compute() -> dict[str, float]:
        px = [raw_pixel_features(x) for x in (data[0], data[2])]
        out = {f"pixels_{k}": v for k, v in _knn_and_linear(px, data, budget.device).items()}
        torch.manual_seed(0)
        enc = build_model(budget.config()).encoder
        out.update({f"random_{k}": v for k, v in _knn_and_linear(_features(enc, data, budget.device), data,
                                                                   budget.device).items()})
        return out
    parts = {"config": budget.config().to_dict(), "data": cache.fingerprint(data)}
    return {k: float(v) for k, v in cache.cached_result(f"{budget.name}-floors", parts, compute).items()
            if k != "cached"}


def arm_run(part: Part, arm_name: str, budget: Budget, seed: int, data: tuple[torch.Tensor, ...]
            ) -> dict[str, Any]:
    """The trained run of SimCLR arm ``arm_name`` of ``part`` at ``seed`` (:func:`simclr_book.cache.cached_pretrain`'s
    summary, with its ``model``): the run :func:`arm_result` measures, trained on the first call and loaded
    from the run cache after, under the same folder name. For a chapter that needs the network itself (chapter
    4: Table 3's probes and the linear head's spectrum)."""
    from simclr_book.plan import arm_config_at
    arm = part.arm(arm_name)
    if arm.kind == "supervised":
        raise ValueError(f"{part.name}: {arm_name} is a supervised arm; only SimCLR arms are runs")
    name = (f"{budget.name}-{arm.shared}" if arm.kind == "shared"
            else f"{budget.name}-{part.name}-{_file_name(arm.name)}")
    views, views_key = fig5_views(*arm.views) if arm.views else (None, None)
    return cache.cached_pretrain(arm_config_at(part, arm, budget, seed), data,
                                 name=name + (f"-seed{seed}" if seed else ""), augment=views, augment_key=views_key)


def evaluate_run(run: dict[str, Any], data: tuple[torch.Tensor, ...], device: str,
                 h_and_z: bool = False) -> dict[str, float]:
    """kNN and linear evaluation of a cached run's h (and z, :func:`evaluate_model`) on all of ``data``, computed
    once (the same cached result as :func:`arm_result`'s for that run): the protocol of the floors, for a
    chapter's own arms (chapter 4's Table 3 arms)."""
    folder = Path(run["folder"]).name
    evals = _eval_parts(h_and_z, device, data, folder)
    res = cache.cached_result(f"eval-{folder}", evals, lambda: evaluate_model(run["model"], data, device, h_and_z))
    return {k: float(v) for k, v in res.items() if k != "cached"}


def arm_workers(budget: Budget, arms: int) -> int:
    """How many processes train ``arms`` missing arms side by side (:func:`side_by_side`): one per core at
    the ``cpu`` budget (a 2-core machine trains two arms at once, one thread each:
    ``benchmarks/bench_parallel_arms.py`` measures how much more that gets done than one process with
    both threads), at most 4; one on a GPU and at ``smoke`` (its arms take seconds). ``SIMCLR_WORKERS``
    overrides it."""
    env = os.environ.get("SIMCLR_WORKERS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"SIMCLR_WORKERS must be a whole number >= 1, got {env!r}")
        return max(1, min(int(env), arms))
    if budget.device != "cpu" or budget.name == "smoke":
        return 1
    return max(1, min(arms, _cores(), 4))


def _cores() -> int:
    return _common().cpu_cores()      # the cores this process may use (benchmarks/_common.py)


_WORKER_DATA: tuple[torch.Tensor, ...] = ()


def _worker_start(data: tuple[torch.Tensor, ...], threads: int) -> None:
    global _WORKER_DATA
    torch.set_num_threads(threads)
    _WORKER_DATA = data


def _worker_call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[float, bool]:
    t0 = time.perf_counter()
    out = fn(*args, data=_WORKER_DATA, **kwargs)
    return time.perf_counter() - t0, not out["cached"]      # a model stays in the worker: only the flag returns


def side_by_side(calls: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]], budget: Budget,
                 data: tuple[torch.Tensor, ...], workers: int | None = None, desc: str = "runs"
                 ) -> list[tuple[float, bool]] | None:
    """Run each ``(fn, args, kwargs)`` of ``calls`` as ``fn(*args, data=data, **kwargs)`` in ``workers``
    processes side by side (:func:`arm_workers` when None), each with an equal share of the cores' threads
    and ``data`` in shared memory (not copied per worker), in the order given (put the longest first).
    ``fn`` is a module-level function that trains (or loads) into the run cache and returns a dict with
    ``cached``; the caller then loads its result from the cache. Returns each call's worker seconds and
    whether it trained (``not cached``), or None when fewer than two workers would run: the caller then
    trains in its own process. A progress bar shows when a person runs the notebook.
    Book: the Reproducing page (a chapter's time at ``cpu``); chapters 2-5."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    import torch.multiprocessing as tmp

    workers = min(arm_workers(budget, len(calls)) if workers is None else workers, len(calls))
    if workers < 2:
        return None
    threads = max(1, _cores() // workers)
    shared = tuple(t.share_memory_() if isinstance(t, torch.Tensor) else t for t in data)
    bar = None
    if cache.interactive():
        from tqdm.auto import tqdm
        bar = tqdm(total=len(calls), desc=f"{desc}, {workers} at once", unit="run")
    out: list[tuple[float, bool]] = [(0.0, False)] * len(calls)
    with ProcessPoolExecutor(workers, mp_context=tmp.get_context("spawn"), initializer=_worker_start,
                             initargs=(shared, threads)) as pool:
        futures = {pool.submit(_worker_call, fn, args, kwargs): i for i, (fn, args, kwargs) in enumerate(calls)}
        for f in as_completed(futures):         # the bar moves as each run ends; out keeps the calls' order
            try:
                out[futures[f]] = f.result()    # a worker's error is raised here, with its message
            except BrokenProcessPool:
                raise RuntimeError(f"{desc}: a worker process training side by side stopped (out of memory, "
                                   "killed, or a script without `if __name__ == '__main__':` around its code); "
                                   "fix that, or set SIMCLR_WORKERS=1 to train in this process") from None
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.close()
    return out


def pretrain_side_by_side(runs: list[tuple[str, dict[str, Any]]], budget: Budget, data: tuple[torch.Tensor, ...],
                          workers: int | None = None) -> set[str]:
    """Train the chapter arms ``runs`` (``(name, overrides)`` of :func:`~simclr_book.budget.train_arm`) that
    the run cache lacks, side by side (:func:`side_by_side`); the chapter then loads each with ``train_arm``
    as before. Returns the names trained here (none where one worker would run: the chapter trains them
    itself). Book: chapter 3 (the validation grid)."""
    from simclr_book.budget import train_arm, train_arm_config
    todo = [(name, kw) for name, kw in runs if not cache.run_cached(train_arm_config(budget, data, **kw), data)]
    done = side_by_side([(train_arm, (name, budget), kw) for name, kw in todo], budget, data, workers,
                        desc="arms trained")
    return {name for (name, _), (_, trained) in zip(todo, done or []) if trained}


def _part_arm(name: str, arm: str, budget: Budget, seed: int, data: tuple[torch.Tensor, ...]) -> dict[str, Any]:
    return arm_result(PARTS[name], arm, budget, seed, data)      # trained (or loaded), evaluated, cached


def result_cached(part: Part, arm: Any, budget: Budget, seed: int, data: tuple[torch.Tensor, ...]) -> bool:
    """Whether :func:`arm_result` of ``arm`` at ``seed`` would load everything from the cache: the run (or a
    supervised arm's result) and its kNN and linear evaluation."""
    from simclr_book.plan import is_cached, run_folders
    if arm.kind == "supervised":
        return is_cached(part, arm, budget, seed, data)
    h_and_z = "h_and_z" in part.evals
    return any(cache.stored_result(_eval_parts(h_and_z, budget.device, data, f.name)) is not None
               for f in run_folders(part, arm, budget, seed, data))


def train_missing(name: str, budget: Budget, data: tuple[torch.Tensor, ...], workers: int | None = None
                  ) -> dict[tuple[str, int], tuple[float, bool]]:
    """Train and evaluate the arms of part ``name`` that the cache lacks (:func:`result_cached`: a run, or
    only its evaluation), side by side (:func:`side_by_side`), longest first; everything lands in the
    cache, so the caller then loads it. Returns the ``(arm, seed)`` pairs done there, each with its worker's
    seconds and whether it trained the arm (False: only its evaluation was missing); empty where one worker
    would run (the caller trains in its own process). Book: the Reproducing page (a chapter's time at ``cpu``)."""
    from simclr_book.plan import arm_minutes, this_device
    part = PARTS[name]
    seeds = part.seeds.get(budget.name, (0,))
    if (arm_workers(budget, len(part.arms) * len(seeds)) if workers is None else workers) < 2:
        return {}          # one worker: the caller trains in its own process (no need to look at the cache here)
    todo = [(a, s) for s in seeds for a in part.arms if not result_cached(part, a, budget, s, data)]
    device = this_device(budget)
    todo.sort(key=lambda t: -arm_minutes(part, t[0], budget, device))
    done = side_by_side([(_part_arm, (name, a.name, budget, s), {}) for a, s in todo], budget, data, workers,
                        desc=f"{name}: arms trained") if len(todo) > 1 else None
    return {} if done is None else {(a.name, s): r for (a, s), r in zip(todo, done)}


def part_results(name: str, budget: Budget, data: tuple[torch.Tensor, ...], workers: int | None = None,
                 report: Any = None) -> dict[str, Any]:
    """Part ``name`` at ``budget`` on a chapter's ``data``: every arm at every seed of the budget
    (:func:`arm_result`, through the run cache; each record adds ``measure_s``, the seconds it took here)
    and the floors, in the results file's layout (``part``, ``budget``, ``test_images``, ``floors``,
    ``arms``), which :func:`decide` and :func:`finding_rows` read. So a chapter decides its rows at its
    budget with the code that decides them at full scale. Arms the cache lacks are trained first,
    ``workers`` at once (:func:`train_missing`); a record trained there says ``cached`` False,
    ``trained_in_parallel`` True; every record done there (trained or only evaluated) has the side-by-side
    wall time spread over them in its ``measure_s``. ``report``: called with each record as it is measured
    (:func:`run_part` prints it). Book: chapters 2-5."""
    part = PARTS[name]
    t_par = time.perf_counter()
    parallel = train_missing(name, budget, data, workers)
    t_par = time.perf_counter() - t_par
    arms = []
    for seed in part.seeds.get(budget.name, (0,)):
        for arm in part.arms:
            t0 = time.perf_counter()
            rec = arm_result(part, arm.name, budget, seed, data)
            rec["measure_s"] = time.perf_counter() - t0
            if parallel.get((arm.name, seed), (0.0, False))[1]:      # trained by a worker, not only evaluated
                rec.update(cached=False, trained_in_parallel=True)
                if rec["train_s"] is None:         # a supervised arm: its worker's time
                    rec["train_s"] = round(parallel[(arm.name, seed)][0], 1)
            arms.append(rec)
            if report is not None:
                report(rec)
    if parallel:      # the chapter's clock counts the side-by-side work once, spread over its arms
        for rec in arms:
            if (rec["arm"], rec["seed"]) in parallel:
                rec["measure_s"] += t_par / len(parallel)
    return {"part": name, "chapter": part.chapter, "title": part.title, "budget": budget.name,
            "train_images": len(data[0]), "test_images": len(data[2]), "floors": floors(budget, data), "arms": arms}


def arm_records(results: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """A part's records (:func:`part_results`) by arm, in the spec's order, each arm's seeds in order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(results["arms"], key=lambda r: r["seed"]):
        out.setdefault(r["arm"], []).append(r)
    order = [a.name for a in PARTS[results["part"]].arms]
    return {a: out[a] for a in order if a in out}


def over_seeds(recs: list[dict[str, Any]], key: str) -> str:
    """A metric of an arm's seeds as a percentage: their mean, then each seed's value in parentheses.

    >>> over_seeds([{"linear": 0.5}, {"linear": 0.52}, {"linear": 0.51}], "linear")
    '51.0 (50.0 / 52.0 / 51.0)'
    """
    vals = [100 * float(r[key]) for r in recs]
    return f"{sum(vals) / len(vals):.1f}" + (f" ({' / '.join(f'{v:.1f}' for v in vals)})" if len(vals) > 1 else "")


def part_table(results: dict[str, Any], metrics: tuple[str, ...] = ("linear", "knn"),
               extra: dict[str, Any] | None = None) -> str:
    """A part's arms as a Markdown table: arm, epochs, batch, steps, each metric over the seeds
    (:func:`over_seeds`; a supervised arm's ``top1`` stands in its ``linear`` column), the training minutes
    of one seed (mean) and how many seeds came from the run cache. ``extra``: column name -> function of an
    arm's records giving a cell, placed after batch. Book: chapters 2 and 5."""
    from simclr_book.budget import markdown_table
    names = {"linear": "linear top-1 (%)", "knn": "kNN top-1 (%)", "linear_z": "linear z (%)", "knn_z": "kNN z (%)"}
    extra = extra or {}
    rows = []
    for arm, recs in arm_records(results).items():
        cells = [arm, recs[0]["epochs"], recs[0]["batch_size"], *(f(recs) for f in extra.values()), recs[0]["steps"]]
        for m in metrics:
            key = "top1" if m == "linear" and "top1" in recs[0] else m
            cells.append(over_seeds(recs, key) if key in recs[0] else "-")
        train = [r["train_s"] for r in recs if r.get("train_s")]
        cells += [f"{sum(train) / len(train) / 60:.1f} min" if train else "-",
                  f"{sum(bool(r['cached']) for r in recs)} of {len(recs)}"]
        rows.append(cells)
    return markdown_table(["arm", "epochs", "batch", *extra, "steps", *(names.get(m, m) for m in metrics),
                           "training (one seed)", "from the cache"], rows)


def loaded_seconds(results: list[dict[str, Any]], budget: Budget) -> dict[str, float]:
    """What the runs of ``results`` (:func:`part_results`, in the order they ran: a run in two parts is
    counted at its first, so a run trained by an earlier part and loaded by a later one is not counted
    twice) would have cost from an empty cache, beyond the wall time of the execution that loaded them:
    ``loaded``, the recorded training seconds of the runs loaded from the run cache (a supervised arm's
    result does not record them: the plan's estimate) and, for a record measured in seconds (its
    evaluations loaded too), the plan's estimate of its kNN and linear evaluations and t-SNE; ``shared``,
    the recorded training seconds of the shared models among them, loaded or not. From an empty cache a
    part's other arms train ``device.workers`` at a time (:func:`train_missing`; 2 on 2 CPU cores), so their
    seconds count divided by it; a shared model trains alone. Book: chapters 2-5 (their time from an empty
    cache, and with the shared models cached)."""
    from simclr_book.plan import TSNE_S, arm_minutes, this_device
    device, seen, out = this_device(budget), set(), {"loaded": 0.0, "shared": 0.0}
    fast = min(5.0, device.eval_s / 4)      # a record measured this fast loaded its evaluations from the cache
    for res in results:
        part = PARTS[res["part"]]
        for r in res["arms"]:
            key = (r["kind"], json.dumps(r["config"], sort_keys=True))
            first = key not in seen
            seen.add(key)
            arm = part.arm(r["arm"])
            if r["kind"] == "shared" and first:
                out["shared"] += r["train_s"]
            side = 1 if r["kind"] == "shared" else device.workers       # arms trained side by side
            if r["cached"] and first:
                out["loaded"] += (60 * arm_minutes(part, arm, budget, device) if r["kind"] == "supervised"
                                  else r["train_s"]) / side
            if r["kind"] != "supervised" and r.get("measure_s", 0.0) < fast:
                spaces = 2 if "h_and_z" in part.evals and arm.shared != "no-head" else 1
                out["loaded"] += ((device.eval_s * spaces / side if first else 0)
                                  + (TSNE_S[budget.name] if "tsne" in r else 0))
    return out


# ---------------------------------------------------------------------------------------- verdicts
def _values(ref: str, results: list[dict[str, Any]]) -> dict[int, float]:
    """Per-seed values of ``"arm:metric"`` in the parts' results."""
    arm, metric = ref.split(":")
    return {r["seed"]: float(r[metric]) for res in results for r in res["arms"] if r["arm"] == arm and metric in r}


def decide(row: Row, results: list[dict[str, Any]]) -> Verdict | None:
    """``row`` decided by the one rule on the seeds that every arm of it has in ``results`` (the results
    files of the finding's parts at one budget), None when an arm is missing. The floors: the highest
    raw-pixel and random-encoder accuracy of the row's kind (kNN or linear)."""
    refs = (row.a, row.b, *row.vs)
    vals = [_values(ref, results) for ref in refs]
    seeds = sorted(set.intersection(*(set(v) for v in vals)))
    if not seeds:
        return None
    cols = [[v[s] for s in seeds] for v in vals]
    n = min(res["test_images"] for res in results)
    kind = "knn" if row.a.split(":")[1].startswith("knn") else "linear"
    lows = [res["floors"][f"{w}_{kind}"] for res in results for w in ("pixels", "random") if res.get("floors")]
    # the floors are representations' (kNN, linear): supervised and fine-tuned accuracies are not held to them
    floor = max(lows) if lows and row.a.split(":")[1] in ("knn", "linear", "knn_z", "linear_z") else None
    names = dict(a_name=row.a, b_name=row.b, metric=row.a.split(":")[1], paper=row.paper, floor=floor)
    if row.vs:
        return compare_gains(row.label, *cols, n=n, sign=row.sign, **names,
                             floor_b=row.vs[0].split(":")[1] in ("knn", "linear"))
    return compare(row.label, cols[0], cols[1], n=n, sign=row.sign, **names)


def finding_rows(finding: Finding, results: dict[str, dict[str, Any]]) -> list[tuple[Row, Verdict | None]]:
    """Each row of ``finding`` with its verdict from the results of its parts (part name -> results)."""
    have = [results[p] for p in finding.parts if p in results]
    return [(row, decide(row, have) if have else None) for row in finding.rows]


# ---------------------------------------------------------------------------------------- files
def decided_rows(fid: int, results: dict[str, dict[str, Any]]) -> list[tuple[Row, Verdict, str]]:
    """Finding ``fid``'s rows that ``results`` decide (:func:`finding_rows`, the one rule), each with the
    cell a chapter prints as ours: the two arms' means, or their gains for a gain-against-gain row.
    Book: chapters 4 and 5."""
    from simclr_book.budget import pct
    from simclr_book.specs import finding_of
    return [(row, v, f"gains {100 * v.a:+.1f} vs {100 * v.b:+.1f} points" if row.vs else f"{pct(v.a)} vs {pct(v.b)}")
            for row, v in finding_rows(finding_of(fid), results) if v is not None]


def results_path(part: str, root: str | Path | None = None) -> Path:
    return Path(root or GPU_RESULTS) / f"{part}.json"


def read_results(part: str, root: str | Path | None = None) -> dict[str, Any] | None:
    """The full-scale results of ``part`` (``book/results/gpu/<part>.json``), or None when not measured."""
    path = results_path(part, root)
    if not path.exists():
        return None
    res = json.loads(path.read_text())
    return res if res.get("budget") == "gpu" else None


def fullscale_cell(finding: Finding, row: Row, root: str | Path | None = None) -> str:
    """A chapter's full-scale cell for ``row``: its verdict at gpu (numbers, seeds, device), or "not
    measured yet" with the command that measures it."""
    results = {p: r for p in finding.parts if (r := read_results(p, root)) is not None}
    missing = [p for p in finding.parts if p not in results]
    if not finding.parts:
        return f"no full-scale part ({finding.note})"
    v = decide(row, list(results.values())) if results else None
    if v is None:
        return "not measured yet: " + "; ".join(f"`{command(p)}`" for p in missing or finding.parts)
    devices = sorted({results[p]["device"] for p in results})
    return (f"{100 * v.a:.1f}% vs {100 * v.b:.1f}%, {v.text()} ({', '.join(devices)})"
            + (f"; not yet measured: {', '.join(missing)}" if missing else ""))


def _common():
    """``benchmarks/_common.py``: the one rule for the commit a result records and for keeping machine
    paths out of results files."""
    name = "simclr_bench_common"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / "_common.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


def run_part(name: str, budget: Budget, argv: list[str] | None = None) -> dict[str, Any]:
    """Every arm of part ``name`` at every seed of ``budget``, the floors and the verdicts: the results."""
    from simclr_lite.distributed import describe_device

    from simclr_book.plan import DEFAULT_DEVICE, DEVICES, part_minutes
    if name not in PARTS:
        raise SystemExit(f"unknown part {name!r}; choose one of {', '.join(PARTS)} (python -m simclr_book.plan)")
    part = PARTS[name]
    t0 = time.perf_counter()
    commit = _common().git_commit_now(REPO)     # at the start: later edits do not relabel these results
    data = load_data(budget, full=True)

    def report(rec: dict[str, Any]) -> None:
        shown = {k: rec[k] for k in ("knn", "linear", "linear_z", "top1", "ft1", "scratch1") if k in rec}
        print(f"{name} {rec['arm']} seed {rec['seed']}: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in shown.items())
              + (" (cached)" if rec["cached"] else f" ({rec['train_s']} s)"), flush=True)
    result: dict[str, Any] = part_results(name, budget, data, report=report)   # side by side at cpu
    result.update(device=describe_device(budget.device), commit=commit, torch=torch.__version__,
                  command="python -m simclr_book.fullscale " + " ".join(sys.argv[1:] if argv is None else argv))
    verdicts = []
    for f in FINDINGS:
        if name in f.parts:
            for row, v in finding_rows(f, {name: result}):
                if v is not None:
                    verdicts.append({"finding": f.id, **v.to_dict()})
    wall = time.perf_counter() - t0
    est = part_minutes(part, budget, DEVICES[DEFAULT_DEVICE[budget.name]])
    result.update(verdicts=verdicts, wall_time_s=round(wall, 1), estimate_min=round(est, 2),
                  finished_utc=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return _common().public_paths(result)


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("part", help="a part of simclr_book.specs (python -m simclr_book.plan lists them)")
    ap.add_argument("--budget", default="gpu", choices=["smoke", "cpu", "gpu"])
    ap.add_argument("--out", default=None, help="results file (default: book/results/gpu/PART.json at gpu; "
                                                "other budgets need --out)")
    args = ap.parse_args(argv)
    if args.budget != "gpu" and not args.out:
        raise SystemExit("--out FILE is needed below the gpu budget: book/results/gpu holds full-scale results only")
    budget = get_budget(args.budget)
    result = run_part(args.part, budget, argv)
    out = Path(args.out) if args.out else results_path(args.part)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = (json.dumps(result, indent=1) + "\n").encode()
    atomic_write(out, lambda fh: fh.write(text), "the part's numbers are printed above; free disk space and run "
                 "it again (its runs are cached)", what="results file")
    print(f"wrote {out.name}: {result['wall_time_s']:.0f} s (estimate {60 * result['estimate_min']:.0f} s)")
    for v in result["verdicts"]:
        print(f"  {v['label']}: {Verdict.from_dict({k: x for k, x in v.items() if k != 'finding'}).text()}")
    return out


if __name__ == "__main__":
    main()


# ---------------------------------------------------------------------------------------- chapters
def fullscale_table(chapter: int, root: str | Path | None = None) -> str:
    """A chapter's full-scale findings, each row of each of its findings in its own line: the paper's
    number and the full-scale cell (:func:`fullscale_cell`), as a Markdown table."""
    from simclr_book.budget import markdown_table
    rows = [(f"{f.where}: {f.claim}" if i == 0 else "", row.label, row.paper, fullscale_cell(f, row, root))
            for f in FINDINGS if f.chapter == chapter for i, row in enumerate(f.rows or (None,)) if row]
    rows += [(f"{f.where}: {f.claim}", "-", "-", f"no full-scale part ({f.note})")
             for f in FINDINGS if f.chapter == chapter and not f.rows]
    return markdown_table(["paper's finding", "row", "paper", "full scale (gpu budget, one GPU)"], rows)


def fullscale_plan(chapter: int, device: str = "NVIDIA H100", root: str | Path | None = None) -> str:
    """A chapter's parts at the gpu budget: what each trains, its estimated minutes on ``device`` (from
    an empty cache), its command, and the results file's device and wall time where it was measured."""
    from simclr_book.budget import budget_sizes, markdown_table
    from simclr_book.plan import DEVICES, arm_config_at, part_minutes
    gpu, dev = budget_sizes("gpu"), DEVICES[device]
    rows = []
    for part in (p for p in PARTS.values() if p.chapter == chapter):
        res = read_results(part.name, root)
        seeds = part.seeds["gpu"]
        arms = ", ".join(f"{a.name} ({arm_config_at(part, a, gpu, seeds[0]).epochs} ep.)" for a in part.arms)
        rows.append((f"`{command(part.name)}`", part.title, arms + f"; seed {', '.join(map(str, seeds))}",
                     f"{part_minutes(part, gpu, dev):.1f}",
                     "not measured yet" if res is None else
                     f"{res['device']}, commit {res['commit']}, {res['wall_time_s'] / 60:.1f} min"))
    return markdown_table(["command", "what it measures", "arms (epochs)", f"est. min ({device})", "measured"],
                          rows)
