"""Chapter 5's kit: the batch-size and optimiser study, its runs, tables' inputs and figures.

What the chapter (book/05_batch_size_and_optimizer.ipynb) needs beyond :mod:`simclr_lite.optim` and the
book's other kit modules, kept here so that the notebook shows the experiments, not their plumbing:

- the sizes of every experiment per budget: :data:`PLANS`;
- the learning-rate rules of Appendix B.1 (Table B.1) and the warmup + cosine schedule of Sec. 2.2 / B.1:
  :func:`schedule`, :func:`plot_lr_rules`, :func:`plot_schedules`;
- the small sweeps, trained once through the run cache (:mod:`simclr_book.cache`): Fig. 9's grid at
  equal epochs and LARS against SGD: :class:`BatchStudy`. The decisive arms (Fig. 9 at equal epochs, the
  negatives control, B.1's learning-rate rules) are the specs' parts ``ch05-fig9``, ``ch05-negatives`` and
  ``ch05-lr`` (:mod:`simclr_book.specs`, run by :func:`simclr_book.fullscale.part_results`), drawn by
  :func:`plot_fig9_part` and :func:`plot_negatives` (with :func:`negatives`);
- global against per-device batch norm (Sec. 2.2) with real processes: :func:`bn_command`,
  :func:`torchrun_run`; the simulated per-device BN stays in the chapter (its cache key names its code);
- the memory and time of one step as the batch grows: :func:`step_cost`, :func:`similarity_mib`;
- the chapter's figures (Figs. 5.1-5.9): the ``plot_*`` functions, each returning its figure.

Book: chapter 5.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from simclr_book.budget import Budget, arm_config
from simclr_book.cache import cached_pretrain, result_key, results_dir
from simclr_lite.config import Config
from simclr_lite.data import data_root, fingerprint
from simclr_lite.optim import scaled_lr, warmup_cosine

#: Chapter 5's own sizes per budget (its decisive arms are the specs' parts): batches x epochs of the small
#: Fig. 9 grid, the sweep encoder's width, LARS vs SGD epochs, the simulated per-device BN (images per
#: simulated device, epochs), the torchrun experiment and the batches of the time/memory table.
PLANS: dict[str, dict[str, Any]] = {
    "smoke": dict(width=0.125, grid_batches=(32, 128, 512), grid_epochs=(1, 2), opt_epochs=1,
                  sim=dict(group=16, epochs=1),
                  bn=dict(train=1024, test=512, batch=64, procs=2, epochs=1, arch="resnet10", width=0.125),
                  mem_batches=(16, 32, 64, 128)),
    "cpu": dict(width=0.125, grid_batches=(64, 256, 1024), grid_epochs=(1, 2), opt_epochs=2,
                sim=dict(group=16, epochs=2),
                bn=dict(train=50000, test=10000, batch=256, procs=8, epochs=2, arch="resnet10", width=0.25),
                mem_batches=(32, 64, 128, 256, 512)),
    "gpu": dict(width=1.0, grid_batches=(128, 512, 2048), grid_epochs=(25, 50, 100), opt_epochs=50,
                sim=dict(group=32, epochs=20),
                bn=dict(train=50000, test=10000, batch=256, procs=16, epochs=2, arch="resnet10", width=0.25),
                mem_batches=(128, 256, 512, 1024, 2048)),
}


# ------------------------------------------------------------------------- learning rate (B.1, Sec. 2.2)
def schedule(total: int, warmup: int, peak: float) -> np.ndarray:
    """The learning rate at each of ``total`` steps: linear warmup over ``warmup`` steps to ``peak``, then a
    cosine to zero (Sec. 2.2, B.1; :func:`simclr_lite.optim.warmup_cosine` times the peak).

    >>> [round(float(v), 3) for v in schedule(4, 2, 1.0)]
    [0.5, 1.0, 1.0, 0.5]
    """
    return np.array([peak * warmup_cosine(t, total, warmup) for t in range(total)])


def plot_lr_rules() -> Any:
    """Figure 5.1: the peak learning rate of Appendix B.1's two rules (linear 0.3 x N/256, square root
    0.075 sqrt(N)) and of the book's CPU recipe (1.5 x N/256) against the batch N, log-log."""
    import matplotlib.pyplot as plt
    ns = 2 ** np.arange(5, 14)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.loglog(ns, [scaled_lr(0.3, int(n), "linear") for n in ns], "o-", label="linear: 0.3 x N/256")
    ax.loglog(ns, [scaled_lr(0.075, int(n), "sqrt") for n in ns], "s-", label="square root: 0.075 x sqrt(N)")
    ax.loglog(ns, [scaled_lr(1.5, int(n), "linear") for n in ns], ":", color="gray",
              label="this book's CPU recipe: 1.5 x N/256")
    ax.axvline(4096, color="k", lw=0.8, ls="--")
    ax.set_xlabel("batch size N (images)")
    ax.set_ylabel("peak learning rate")
    ax.set_title("Peak learning rate against batch size")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_schedules(curves: Sequence[tuple[np.ndarray, int, str]]) -> Any:
    """Figure 5.2: each ``(learning rate per step, steps per epoch, title)`` of ``curves`` in its own panel."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(curves), figsize=(4.5 * len(curves), 3.2), squeeze=False)
    for ax, (lr, per_epoch, name) in zip(axes[0], curves):
        ax.plot(np.arange(len(lr)), lr)
        ax.set_xlabel(f"step ({per_epoch} steps per epoch)")
        ax.set_ylabel("learning rate")
        ax.set_title(name, fontsize=10)
    fig.suptitle("Linear warmup, then cosine decay, per step")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------ Fig. 9: the designs
def negatives(g: int, batch: int) -> int:
    """Negatives per anchor with sub-batches of ``g`` pairs of a batch of ``batch`` pairs (``g`` = 0: the whole
    batch; ``nt_xent(group=g)``): the other ``2g - 2`` views of the sub-batch (Fig. 9's mechanism, Sec. 3).

    >>> negatives(64, 1024), negatives(0, 1024)
    (126, 2046)
    """
    return 2 * (g or batch) - 2


def epoch_losses(history: Sequence[Mapping[str, Any]]) -> list[float]:
    """The per-epoch mean losses of a run's metric history (entries of ``kind`` "epoch")."""
    return [r["loss"] for r in history if r["kind"] == "epoch"]


class BatchStudy:
    """Chapter 5's own sweeps (Fig. 9's small grid, Sec. 2.2's LARS against SGD), each trained once and then
    loaded from the run cache (:meth:`run`: the budget's recipe with the sweep encoder of width ``width`` on
    ``data``, the budget's images); :attr:`data50_fp` (the fingerprint of ``data50``, all images at the cpu
    budget) and :attr:`recipe` (the main recipe, :func:`simclr_book.budget.arm_config`) serve the chapter's
    batch-norm experiments.

    ``runs``: ``(label, batch, epochs)`` -> a sweep's summary (without its model); ``loaded``: run name -> its
    recorded training seconds, for every run loaded from the cache (the chapter adds its other cached
    results, for its estimate of the time from an empty cache).
    """

    def __init__(self, budget: Budget, data: Sequence[torch.Tensor], data50: Sequence[torch.Tensor],
                 width: float) -> None:
        self.budget, self.data, self.width = budget, tuple(data), width
        self.data50_fp = fingerprint(tuple(data50))      # the key of the torchrun runs on all images
        self.recipe: Config = arm_config(budget)
        self.runs: dict[tuple[str, int, int], dict[str, Any]] = {}
        self.loaded: dict[str, float] = {}

    # ----------------------------------------------------------------------------------- sweeps
    def sweep_config(self, **overrides: Any) -> Config:
        """The budget's pretraining config with the sweep encoder, plus the field(s) under study."""
        return self.budget.config(width=self.width, **overrides)

    def run(self, label: str, seed: int = 0, diverged_ok: bool = False, **overrides: Any) -> dict[str, Any]:
        """One sweep run (``label`` names what it studies: ``lars``, ``sgd``, ``linear``, ``sqrt``), about five
        loss points per epoch, stored in :attr:`runs` under ``(label, batch, epochs)`` (label
        ``<label>/seed<k>`` for seeds other than 0). ``diverged_ok``: a run that stops with a
        :class:`~simclr_lite.errors.TrainingError` (diverged) is a result too, recorded with a NaN kNN, no
        history and its ``error``."""
        from simclr_lite.errors import TrainingError
        overrides.setdefault("log_every", max(1, len(self.data[0]) // overrides["batch_size"] // 5))
        cfg = self.sweep_config(seed=seed, **overrides)
        label = label if seed == 0 else f"{label}/seed{seed}"
        name = f"{self.budget.name}-ch05-{label.replace('/', '-')}-b{cfg.batch_size}-e{cfg.epochs}"
        try:
            s = cached_pretrain(cfg, self.data, name=name)
        except TrainingError as err:
            if not diverged_ok:
                raise
            print(f"{label.upper()} at batch {cfg.batch_size} diverged: {err}")
            s = {"knn_top1": float("nan"), "history": [], "error": str(err)}
        else:
            s.pop("model")
            if s["cached"]:
                self.loaded[name] = s["wall_time_s"]
        self.runs[(label, cfg.batch_size, cfg.epochs)] = s
        return s

    def knn(self, label: str, b: int, epochs: int, seed: int = 0) -> float:
        """kNN top-1 of the sweep run ``label`` at batch ``b``, ``epochs`` and ``seed``."""
        return self.runs[(label if seed == 0 else f"{label}/seed{seed}", b, epochs)]["knn_top1"]


# ------------------------------------------------------------------------ Sec. 2.2: global BN, torchrun
def bn_command(bn: Mapping[str, Any], mode: str, out: str | os.PathLike) -> list[str]:
    """The CLI under torchrun: ``bn["procs"]`` gloo processes on the CPU, the main recipe's settings of ``bn``
    (train / test images, arch, width, batch, epochs), synchronised BN ``mode`` ("on" or "off"), seed 0,
    writing its run folder to ``out`` (Sec. 2.2's global BN with real processes)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={bn['procs']}",
            "-m", "simclr_lite", "pretrain", "--preset", "cifar10-cpu", "--out", str(out), "--no-progress",
            "--data", str(data_root()), "--train-limit", str(bn["train"]), "--test-limit", str(bn["test"]),
            "--arch", bn["arch"], "--width", str(bn["width"]),
            "--stem-stride", "2", "--batch-size", str(bn["batch"]), "--epochs", str(bn["epochs"]),
            "--compile", "false", "--device", "cpu", "--threads", "1", "--sync-bn", mode, "--seed", "0",
            "--log-every", "5"]


def bn_command_text(bn: Mapping[str, Any], mode: str = "on") -> str:
    """:func:`bn_command` as a reader types it: ``torchrun`` for the launcher, ``PATH`` for the data folder,
    ``$OUT`` for the run folder."""
    return " ".join(["torchrun"] + ["PATH" if a == str(data_root()) else a for a in bn_command(bn, mode, "$OUT")[3:]])


def torchrun_run(budget_name: str, bn: Mapping[str, Any], mode: str, data_fp: str,
                 loaded: dict[str, float] | None = None) -> dict[str, Any]:
    """One torchrun run (:func:`bn_command`), trained once into ``<cache>/results/`` (a folder named by its
    command, the package's code, the torch version and ``data_fp``, the data's fingerprint), then loaded:
    the run's own ``summary`` and ``metrics``, its folder ``out`` and ``cached``. A loaded run's training
    seconds go into ``loaded``."""
    key = result_key(dict(cmd=bn_command(bn, mode, "OUT")[1:], data=data_fp))
    out = results_dir() / f"{budget_name}-torchrun-sync-{mode}-{key}"
    cached = (out / "run.json").exists()
    if not cached:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
        try:
            p = subprocess.run(bn_command(bn, mode, tmp / "run"), capture_output=True, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
            if p.returncode != 0:
                print(p.stderr[-3000:])
            assert p.returncode == 0, f"torchrun failed with exit code {p.returncode}"
            os.replace(tmp / "run", out)       # complete runs only: a crash leaves nothing under the key
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    summary = json.loads((out / "run.json").read_text())
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    if cached and loaded is not None:
        loaded[f"torchrun-sync-{mode}"] = summary["wall_time_s"]
    return dict(summary=summary, metrics=metrics, out=out, cached=cached)


def smooth(v: Sequence[float], w: int) -> np.ndarray:
    """Running mean of ``v`` over ``w`` steps (the first points average what there is).

    >>> smooth([1, 3, 5, 7], 2).tolist()
    [1.0, 2.0, 4.0, 6.0]
    """
    c = np.cumsum(np.insert(np.asarray(v, dtype=float), 0, 0))
    return np.array([(c[i + 1] - c[max(0, i + 1 - w)]) / min(w, i + 1) for i in range(len(v))])


def last_epoch(log: Sequence[Mapping[str, float]], steps_per_epoch: int) -> dict[str, float]:
    """The last epoch's steps of a per-step ``log`` (``step``, ``loss``, ``accuracy``): mean loss
    ``loss_last``, mean contrastive accuracy ``acc_last``, its standard deviation ``acc_sd`` and the number
    of steps ``n_last``."""
    last = [s for s in log if s["step"] > len(log) - steps_per_epoch]
    acc = [s["accuracy"] for s in last]
    return dict(loss_last=np.mean([s["loss"] for s in last]), acc_last=np.mean(acc), acc_sd=np.std(acc, ddof=1),
                n_last=len(last))


# ------------------------------------------------------------------------------ memory and time per step
def similarity_mib(n: int) -> float:
    """MiB of NT-Xent's (2N)^2 float32 similarity matrix at batch ``n``.

    >>> similarity_mib(1024), similarity_mib(4096)
    (16.0, 256.0)
    """
    return (2 * n) ** 2 * 4 / 2**20


def step_cost(budget: Budget, images: torch.Tensor, batch: int, reps: int) -> dict[str, Any]:
    """One training step of the budget's main encoder (``budget.config()``) on the first ``batch`` of ``images``:
    two views, forward through f and g, NT-Xent, backward, a LARS update. ``step_s``: the median wall time of
    ``reps`` steps after a warm-up step; ``act_mb``: MiB of the tensors autograd saves for the backward pass
    (each storage once, parameters excluded), which grow with the batch; ``fixed_mb``: parameters, gradients
    and momentum (three copies of the weights); ``params``: the parameter count."""
    from simclr_lite.augment import SimCLRAugment
    from simclr_lite.config import build_model
    from simclr_lite.losses import nt_xent
    from simclr_lite.models import count_parameters
    from simclr_lite.optim import build_optimizer
    torch.manual_seed(0)
    cfg = budget.config()
    model = build_model(cfg).to(budget.device).train()
    opt = build_optimizer(model, "lars", scaled_lr(cfg.lr, batch), cfg.weight_decay)
    aug = SimCLRAugment(32, strength=cfg.strength, scale=(cfg.min_scale, 1.0))
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    x = images[:batch].to(budget.device)
    times, saved, act = [], {}, 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            saved[ptr] = t.untyped_storage().nbytes()
        return t

    for i in range(reps + 1):
        g = torch.Generator(device=budget.device).manual_seed(i)
        if budget.device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        views = torch.cat([aug(x, generator=g), aug(x, generator=g)])
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            _, z = model(views)
            loss = nt_xent(*z.chunk(2), temperature=cfg.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if budget.device == "cuda":
            torch.cuda.synchronize()
        if i > 0:                    # step 0 is a warm-up
            times.append(time.perf_counter() - t0)
        if i == 0:
            act = sum(saved.values())
    fixed = 3 * sum(p.numel() * p.element_size() for p in model.parameters())
    return dict(batch=batch, step_s=float(np.median(times)), act_mb=act / 2**20, fixed_mb=fixed / 2**20,
                params=count_parameters(model))


# ------------------------------------------------------------------------------------------- figures
def _floor_lines(ax: Any, floors: Mapping[str, float]) -> None:
    """The floors of a kNN figure: the random-init encoder (dashed) and raw pixels (dotted)."""
    ax.axhline(100 * floors["random"], color="k", ls="--", lw=1, label="random-init encoder")
    ax.axhline(100 * floors["pixels"], color="k", ls=":", lw=1, label="raw pixels")


def plot_grid(grid: np.ndarray, batches: Sequence[int], epochs: Sequence[int], floors: Mapping[str, float],
              title: str) -> Any:
    """Figure 5.3, Fig. 9's small grid: kNN top-1 ``grid[i, j]`` (fractions) of batch ``batches[i]`` after
    ``epochs[j]``, as grouped bars, with the floors (``random``, ``pixels``)."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3.6))
    nb = len(batches)
    xs = np.arange(len(epochs))
    wbar = 0.8 / nb
    for i, b in enumerate(batches):
        bars = ax.bar(xs + (i - (nb - 1) / 2) * wbar, 100 * grid[i], wbar, label=f"batch {b}")
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    _floor_lines(ax, floors)
    ax.set_xticks(xs, [f"{e} epoch{'s' if e > 1 else ''}" for e in epochs])
    ax.set_xlabel("training epochs")
    ax.set_ylabel("kNN top-1 (%)")
    ax.set_ylim(100 * min(floors["random"], grid.min()) - 5, 100 * max(grid.max(), floors["pixels"]) + 5)
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return fig


def _seed_points(ax: Any, xs: Sequence[float], per_seed: Sequence[Sequence[float]], color: str, label: str) -> None:
    """Each arm's seeds as small dots and their mean as a line through the arms (percentages)."""
    for x, vals in zip(xs, per_seed):
        ax.plot([x] * len(vals), [100 * v for v in vals], ".", color=color, alpha=0.5)
    ax.plot(xs, [100 * float(np.mean(v)) for v in per_seed], "o-", color=color, label=label)


def _part_floor_lines(ax: Any, floors: Mapping[str, float], metric: str) -> None:
    """A part's floors (:func:`simclr_book.fullscale.floors`) for ``metric`` (``linear`` or ``knn``)."""
    ax.axhline(100 * floors[f"random_{metric}"], color="k", ls="--", lw=1, label="random-init encoder")
    ax.axhline(100 * floors[f"pixels_{metric}"], color="k", ls=":", lw=1, label="raw pixels")


def plot_fig9_part(results: Mapping[str, Any], title: str, metric: str = "linear") -> Any:
    """Figure 5.4, Fig. 9 at equal epochs (part ``ch05-fig9``): ``metric`` top-1 of each batch against the
    training epochs, a line through the seeds' means (dots: each seed), with the part's floors."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    by_batch: dict[int, dict[int, list[float]]] = {}
    for r in results["arms"]:
        by_batch.setdefault(r["batch_size"], {}).setdefault(r["epochs"], []).append(r[metric])
    for i, (b, pts) in enumerate(sorted(by_batch.items())):
        xs = sorted(pts)
        _seed_points(ax, xs, [pts[e] for e in xs], f"C{i}", f"batch {b}")
    _part_floor_lines(ax, results["floors"], metric)
    ax.set_xticks(sorted({e for pts in by_batch.values() for e in pts}))
    ax.set_xlabel(f"epochs (every batch sees each of the {results['train_images']:,} images once per epoch)")
    ax.set_ylabel(f"{'linear evaluation' if metric == 'linear' else 'kNN'} top-1 (%)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_negatives(results: Mapping[str, Any], title: str, metric: str = "linear") -> Any:
    """Figure 5.5, Fig. 9's mechanism (part ``ch05-negatives``): ``metric`` top-1 of each arm against its
    negatives per anchor (sub-batches of g pairs; ``neg_group`` 0 is the whole batch), a line through the
    seeds' means (dots: each seed), with the part's floors."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    by_neg: dict[int, list[float]] = {}
    for r in results["arms"]:
        by_neg.setdefault(negatives(r["config"]["neg_group"], r["batch_size"]), []).append(r[metric])
    xs = sorted(by_neg)
    _seed_points(ax, xs, [by_neg[x] for x in xs], "C0", f"batch {results['arms'][0]['batch_size']}")
    _part_floor_lines(ax, results["floors"], metric)
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel("negatives per anchor (2g - 2)")
    ax.set_ylabel(f"{'linear evaluation' if metric == 'linear' else 'kNN'} top-1 (%)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_lars_sgd(runs: Mapping[tuple[str, int, int], Mapping[str, Any]], batches: Sequence[int],
                  epochs: int) -> Any:
    """Figure 5.6: the logged training loss of LARS and SGD (``runs[(label, batch, epochs)]``) per batch."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(batches), figsize=(4.5 * len(batches), 3.2), squeeze=False)
    for ax, b in zip(axes[0], batches):
        for label, style in (("lars", "-"), ("sgd", "--")):
            pts = [(r["epoch"], r["loss"]) for r in runs[(label, b, epochs)]["history"] if r["kind"] == "step"]
            if pts:
                ax.plot(*zip(*pts), style, marker=".", label=label.upper())
        ax.set_xlabel("epoch")
        ax.set_ylabel("NT-Xent loss (nats)")
        ax.set_title(f"batch {b}, peak lr {scaled_lr(1.5, b):.3g}", fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle("LARS against SGD with momentum, same schedule")
    fig.tight_layout()
    return fig


def plot_bn_sim(sims: Mapping[str, Mapping[str, Any]], group: int, w: int, title: str) -> Any:
    """Figure 5.7: training loss and contrastive accuracy per step (running mean over ``w`` steps) of the
    simulated BN arms (``sims[name]["log"]``; a name other than "global" has groups of ``group`` images)."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for (name, r), style in zip(sims.items(), ("-", "--")):
        ep = [s["epoch"] for s in r["log"]]
        label = f"{name} BN" + (f" (groups of {group})" if name != "global" else "")
        axes[0].plot(ep, smooth([s["loss"] for s in r["log"]], w), style, label=label)
        axes[1].plot(ep, 100 * smooth([s["accuracy"] for s in r["log"]], w), style, label=label)
    axes[0].set_ylabel("NT-Xent loss (nats)")
    axes[1].set_ylabel("contrastive accuracy (%)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_torchrun_losses(bn_runs: Mapping[str, Mapping[str, Any]], procs: int) -> Any:
    """Figure 5.8: the logged training loss of the torchrun runs with synchronised (``on``) and per-device
    (``off``) BN over ``procs`` processes."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    for mode, name, style in (("on", "synchronised BN", "-"), ("off", "per-device BN", "--")):
        pts = [(r["epoch"], r["loss"]) for r in bn_runs[mode]["metrics"] if r["kind"] == "step"]
        ax.plot(*zip(*pts), style, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("NT-Xent loss, global batch (nats)")
    ax.set_title(f"{procs} torchrun processes: synchronised against per-device BN")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_step_cost(cost: Sequence[Mapping[str, Any]], title: str) -> Any:
    """Figure 5.9: time per step (left) and memory (right: saved activations, weights + gradients + momentum)
    of :func:`step_cost` records against the batch, log-log."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    bs = [c["batch"] for c in cost]
    axes[0].plot(bs, [c["step_s"] for c in cost], "o-")
    axes[0].set_ylabel("time per step (s)")
    axes[0].set_title("Wall time of one step", fontsize=10)
    axes[1].plot(bs, [c["act_mb"] for c in cost], "o-", label="saved activations")
    axes[1].plot(bs, [c["fixed_mb"] for c in cost], "s--", label="weights + grads + momentum")
    axes[1].set_ylabel("memory (MiB)")
    axes[1].set_title("Memory of one step", fontsize=10)
    axes[1].legend(fontsize=8)
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size N (images)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def learned_below_chance(losses: Sequence[float], batch: int) -> bool:
    """Whether a run's logged NT-Xent losses are all finite and the last one is below chance level at batch
    ``batch``, log(2N - 1): the loss when every one of the 2N - 1 other views is equally similar.

    >>> learned_below_chance([5.0, 3.0], 64), learned_below_chance([3.0, float("nan")], 64)
    (True, False)
    >>> learned_below_chance([5.0], 64), learned_below_chance([], 64)   # log(127) = 4.84
    (False, False)
    """
    return bool(losses) and all(math.isfinite(v) for v in losses) and losses[-1] < math.log(2 * batch - 1)
