"""The shared ``main`` model, judged: chapter 1's run against the floors and chapter 6's protocols.

Chapter 1 (``book/01_simclr_in_one_picture.ipynb``) trains the book's shared model and compares it
with raw pixels and a random encoder under one kNN vote; chapter 6 (``book/06_evaluation.ipynb``)
evaluates the same encoder with the paper's protocols (Sec. 2.3): linear evaluation (Table 6), the
kNN monitor and fine-tuning on 1% / 10% of the labels against training from scratch (Table 7). The
notebooks keep the derivations that assert against :mod:`simclr_lite.evaluate`; this module keeps
their loops, step counts and figures:

- :func:`cli_command`: the ``python -m simclr_lite pretrain`` line of a config (chapter 1).
- :func:`as_image` and :func:`plot_views` (Fig. 1.2), :func:`plot_knn_during_run` (Fig. 1.4, right).
- :func:`plot_run` (Figs. 1.4 and 6.1), :func:`plot_knn_bars` (Fig. 1.3) and
  :func:`longer_training_verdict` (chapter 1's findings).
- :func:`knn_accuracy_vs_k` (Fig. 6.3): the weighted kNN vote for many k from one search.
- :func:`fine_tune_fractions` and :func:`linear_on_fractions` (Table 7), :func:`optimiser_steps`.
- :func:`plot_neighbours` (Fig. 6.2), :func:`plot_knn_vs_k` (Fig. 6.3),
  :func:`plot_label_fractions` (Fig. 6.4).

Book: chapters 1 and 6.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from simclr_lite.data import CIFAR10_CLASSES


# ------------------------------------------------------------------------------------- chapter 1
def cli_command(cfg: Any, base: str, train_images: int | None = None, test_images: int | None = None,
                width: int = 80) -> str:
    """The ``python -m simclr_lite pretrain --preset BASE ...`` command that parses into ``cfg``: the
    preset ``base`` (with ``--epochs``: a preset's time budget is then off), every field that differs
    from it and, for a subset, ``--train-limit`` / ``--test-limit``; wrapped as a shell command of at
    most ``width`` characters a line (``data`` and ``out`` as PATH and runs/ch01)."""
    from simclr_lite.config import preset
    ref = preset(base, epochs=cfg.epochs)

    def flag(name: str, v: Any) -> str:
        return f"--{name.replace('_', '-')} {str(v).lower() if isinstance(v, bool) else v}"

    flags = [flag(f.name, getattr(cfg, f.name)) for f in dataclasses.fields(cfg)
             if f.name == "epochs" or getattr(cfg, f.name) != getattr(ref, f.name)]
    if train_images is not None:
        flags += [f"--train-limit {train_images}", f"--test-limit {test_images}"]
    lines = [""]
    for w in f"python -m simclr_lite pretrain --preset {base} {' '.join(flags)} --data PATH --out runs/ch01".split():
        if len(lines[-1]) + len(w) + 3 > width:
            lines[-1] += " \\"
            lines.append("   ")
        lines[-1] += (" " if lines[-1] else "") + w
    return "\n".join(lines)


def as_image(t: torch.Tensor) -> Any:
    """An image tensor for ``imshow``: (1, 3, H, W) or (3, H, W), uint8 or float in [0, 1] -> (H, W, 3)."""
    t = t.squeeze(0)
    return (t.float() / 255 if t.dtype == torch.uint8 else t).permute(1, 2, 0).clamp(0, 1).numpy()


def plot_views(images: torch.Tensor, views: Sequence[torch.Tensor], titles: Sequence[str]) -> Any:
    """Fig. 1.2: each image (top row, titled) above its views (one row per tensor of ``views``), as drawn
    by :class:`simclr_lite.augment.SimCLRAugment` (the paper's Fig. 2: t(x) and t'(x))."""
    import matplotlib.pyplot as plt
    rows = [(images, "image $x$")] + list(zip(views, ("view $t(x)$", "view $t'(x)$", "view")))
    fig, axes = plt.subplots(len(rows), len(images), figsize=(9, 1.3 * len(rows)), squeeze=False)
    for r, (batch, name) in enumerate(rows):
        for c in range(len(images)):
            ax = axes[r, c]
            ax.imshow(as_image(batch[c]), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=10)
            if c == 0:
                ax.set_ylabel(name, fontsize=10)
    fig.suptitle("Two random views of each image (32 x 32 pixels), drawn by SimCLRAugment", fontsize=11)
    fig.tight_layout()
    return fig


def plot_run(run: dict[str, Any], cfg: Any, title: str, ax: Any = None, learned_nothing: bool = False) -> Any:
    """The NT-Xent loss of a pretraining ``run`` (its history: the mean of each window of
    ``cfg.log_every`` steps and each epoch's mean). ``learned_nothing`` adds log(2N - 1), the loss of a
    network that maps every view to one direction (Algorithm 1), and the learning rate on a right axis
    (Figs. 1.4 and 6.1)."""
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    steps = [r for r in run["history"] if r["kind"] == "step"]
    ep = [r for r in run["history"] if r["kind"] == "epoch"]
    ax.plot([r["step"] for r in steps], [r["loss"] for r in steps], color="#e69138", lw=1.2,
            label=f"loss, mean of {cfg.log_every} steps")
    ax.plot([r["step"] for r in ep], [r["loss"] for r in ep], "o", ms=4, color="#b45f06", label="loss, epoch mean")
    ax.set_xlabel(f"step (N = {cfg.batch_size}; {run['steps'] // cfg.epochs} steps per epoch)", fontsize=9)
    ax.set_ylabel("NT-Xent loss (nats)", fontsize=9)
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=8)
    if not learned_nothing:
        ax.legend(fontsize=8)
        return ax
    log2n1 = math.log(2 * cfg.batch_size - 1)
    ax.axhline(log2n1, color="k", ls=":", lw=1, label=f"log(2N-1) = {log2n1:.2f}")
    ax_lr = ax.twinx()
    lr_line, = ax_lr.plot([r["step"] for r in steps], [r["lr"] for r in steps], color="0.55", lw=1, ls="--",
                          label="learning rate (right axis)")
    ax_lr.set_ylabel("learning rate (LARS)", color="0.45", fontsize=9)
    ax_lr.tick_params(labelsize=8)
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles + [lr_line], labels + [lr_line.get_label()], fontsize=8, loc="upper center",
              bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    return ax


def plot_knn_during_run(ax: Any, run: dict[str, Any], floors: dict[str, float], train_images: int,
                        epochs: int) -> None:
    """Fig. 1.4, right: the kNN top-1 of a run's history, between epochs (a random bank of
    ``cfg.knn_bank`` images) and at its end (all ``train_images``), against the ``floors`` (name ->
    accuracy, measured with all training images as bank) and chance."""
    from matplotlib.ticker import MaxNLocator
    ke = [r for r in run["history"] if r["kind"] == "epoch" and "knn_top1" in r]
    mid = [r for r in ke if r["knn_bank"] < train_images]
    end = [r for r in ke if r["knn_bank"] == train_images]
    if mid:
        ax.plot([r["epoch"] for r in mid], [100 * r["knn_top1"] for r in mid], "o-", color="#e69138",
                label=f"SimCLR, bank {mid[0]['knn_bank']:,}")
    ax.plot([r["epoch"] for r in end], [100 * r["knn_top1"] for r in end], "*", ms=12, color="#b45f06",
            label=f"SimCLR, end, bank {train_images:,}")
    for (name, acc), color in zip(floors.items(), ("#999999", "#6fa8dc")):
        ax.axhline(100 * acc, color=color, ls="--", label=f"{name}, bank {train_images:,}")
    ax.axhline(10, color="k", ls=":", lw=1, label="chance")
    ax.set_xlabel("epoch", fontsize=9)
    ax.set_xlim(0, epochs + 1)
    ax.set_ylim(0, 100 * max([r["knn_top1"] for r in ke] + list(floors.values())) + 8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("kNN top-1 accuracy (%)", fontsize=9)
    ax.set_title(f"kNN of h ({run['knn_test_images']:,} test images)", fontsize=10)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)


def longer_training_verdict(run: dict[str, Any], floor: float) -> tuple[str, str]:
    """Whether a run's kNN accuracy kept rising (B.9: the best runs are the longest): its first and last
    kNN points on the same bank (one seed, the same test images), by the book's rule
    (:func:`simclr_book.verdict.compare`) with the kNN ``floor`` (the better of raw pixels and the random
    encoder). Returns the row's text and its verdict cell; one point cannot tell."""
    from simclr_book.budget import pct
    from simclr_book.verdict import compare
    ke = [r for r in run["history"] if r["kind"] == "epoch" and "knn_top1" in r]
    curve = [r for r in ke if r["knn_bank"] == ke[0]["knn_bank"]] if ke else []
    if len(curve) < 2:
        return "one kNN point", "not at this budget: too few epochs to tell"
    first, last = curve[0], curve[-1]
    v = compare("longer training keeps helping (kNN)", [last["knn_top1"]], [first["knn_top1"]],
                n=run["knn_test_images"], sign=+1, a_name=f"epoch {last['epoch']}", b_name=f"epoch {first['epoch']}",
                metric="knn", paper="~1000 epochs for 94.0%", floor=floor)
    return (f"kNN {pct(first['knn_top1'])} at epoch {first['epoch']} -> {pct(last['knn_top1'])} at epoch "
            f"{last['epoch']} (bank {first['knn_bank']:,}, {run['knn_test_images']:,} test images)", v.cell())


def plot_knn_bars(knn: dict[str, float], title: str) -> Any:
    """Fig. 1.3: one bar per representation (name -> kNN top-1), labelled, with chance (10 classes)."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3.8))
    vals = [100 * v for v in knn.values()]
    bars = ax.bar(list(knn), vals, color=["#999999", "#9fc5e8", "#e69138"][:len(vals)], width=0.6)
    for b, v in zip(bars, vals):
        ax.text(b.get_x() + b.get_width() / 2, v + 0.8, f"{v:.1f}%", ha="center", fontsize=11)
    ax.axhline(10, color="k", ls=":", lw=1, label="chance (10 classes)")
    ax.legend(loc="upper left", fontsize=9)
    ax.set_ylabel("kNN top-1 accuracy (%)")
    ax.set_ylim(0, max(vals) + 8)
    ax.set_title(title, fontsize=11)
    return fig


# ------------------------------------------------------------------------------------- chapter 6
def knn_accuracy_vs_k(train_h: torch.Tensor, train_y: torch.Tensor, test_h: torch.Tensor, test_y: torch.Tensor,
                      ks: Sequence[int], temperatures: Sequence[float], chunk: int = 2048
                      ) -> dict[float, list[float]]:
    """Accuracy of the weighted kNN vote of :func:`simclr_lite.evaluate.knn_predict` (weights
    exp(s / t) on cosine similarities s, Wu et al. 2018) for every k in ``ks`` and t in ``temperatures``,
    from one search: the max(ks) nearest training features of each test feature, most similar first.
    Returns ``{t: [accuracy at each k]}`` (Fig. 6.3)."""
    bank = train_h / train_h.norm(dim=1, keepdim=True)
    kmax, classes = max(ks), int(train_y.max()) + 1
    top_s, top_y = [], []
    for i in range(0, len(test_h), chunk):
        v, j = (F.normalize(test_h[i:i + chunk], dim=1) @ bank.T).topk(kmax, dim=1)
        top_s.append(v)
        top_y.append(train_y[j])
    s, y = torch.cat(top_s), torch.cat(top_y)

    def acc(k: int, t: float) -> float:
        votes = torch.zeros(len(test_h), classes).scatter_add_(1, y[:, :k], torch.exp(s[:, :k] / t))
        return (votes.argmax(1) == test_y).float().mean().item()

    return {t: [acc(k, t) for k in ks] for t in temperatures}


def fine_tune_fractions(encoder: torch.nn.Module, scratch: Callable[[], torch.nn.Module], data: Sequence[torch.Tensor],
                        epochs: dict[float, int], device: str, seed: int = 0,
                        log: Callable[[str], None] | None = print) -> dict[tuple[float, str], dict[str, Any]]:
    """Table 7: for each label fraction f of ``epochs`` (f -> epochs), a class-balanced subset
    (:func:`simclr_lite.data.label_subset`, ``seed``) of the training images of ``data``
    (``xtr, ytr, xte, yte``), fine-tuned (:func:`simclr_lite.evaluate.fine_tune`) from a copy of
    ``encoder`` ("SimCLR") and from ``scratch()`` ("scratch", a freshly initialised encoder of the
    same architecture), each after ``torch.manual_seed(seed)``. Returns per ``(f, start)`` top-1,
    top-5, labels, per_class, epochs and the seconds it took."""
    import time

    from simclr_lite.data import label_subset
    from simclr_lite.evaluate import fine_tune
    xtr, ytr, xte, yte = data
    out = {}
    for frac, ep in epochs.items():
        idx = label_subset(ytr, frac, seed=seed)
        counts = torch.bincount(ytr[idx], minlength=int(ytr.max()) + 1)
        assert counts.min() == counts.max(), counts             # class-balanced
        for start in ("SimCLR", "scratch"):
            torch.manual_seed(seed)
            enc = copy.deepcopy(encoder) if start == "SimCLR" else scratch()
            t0 = time.perf_counter()
            res = fine_tune(enc, xtr[idx], ytr[idx], xte, yte, epochs=ep, seed=seed, device=device)
            out[frac, start] = dict(res, labels=len(idx), per_class=int(counts[0]), epochs=ep,
                                    seconds=time.perf_counter() - t0)
            if log:
                log(f"{frac:>5.0%} = {len(idx):>6,} labels, {ep:>2d} epochs, {start:<7}: top-1 {res['top1']:.1%}, "
                    f"top-5 {res['top5']:.1%} ({out[frac, start]['seconds']:.1f} s)")
    return out


def linear_on_fractions(train_h: torch.Tensor, train_y: torch.Tensor, test_h: torch.Tensor, test_y: torch.Tensor,
                        fractions: Sequence[float], epochs: int, seed: int = 0) -> dict[float, dict[str, float]]:
    """Linear evaluation (:func:`simclr_lite.evaluate.linear_eval`) on the features of the same
    class-balanced label subsets as :func:`fine_tune_fractions`: the frozen encoder with a linear
    classifier, Table 7's cheaper alternative."""
    from simclr_lite.data import label_subset
    from simclr_lite.evaluate import linear_eval
    out = {}
    for frac in fractions:
        idx = label_subset(train_y, frac, seed=seed)
        out[frac] = linear_eval(train_h[idx], train_y[idx], test_h, test_y, epochs=epochs, seed=seed)
    return out


def default_batch(protocol: str) -> int:
    """The default batch of ``fine_tune`` or ``linear_eval`` (``protocol``), read from its signature."""
    import inspect

    from simclr_lite.evaluate import fine_tune, linear_eval
    fn = {"fine_tune": fine_tune, "linear_eval": linear_eval}[protocol]
    return inspect.signature(fn).parameters["batch_size"].default


def optimiser_steps(labels: int, epochs: int, protocol: str) -> int:
    """Optimiser steps of a run on ``labels`` labelled images at the default batch: ``fine_tune`` takes
    max(1, labels // batch) steps an epoch (a subset smaller than two batches: one step), ``linear_eval``
    ceil(labels / batch)."""
    batch = default_batch(protocol)
    return epochs * (max(1, labels // batch) if protocol == "fine_tune" else math.ceil(labels / batch))


#: Table 7's ImageNet numbers (ResNet-50, top-5): fine-tuned SimCLR against from scratch, per label fraction.
PAPER_T7 = {0.01: "R50: 75.5% vs 48.4% top-5", 0.1: "R50: 87.8% vs 80.4% top-5"}


def table7_verdicts(ft: dict[tuple[float, str], dict[str, Any]], frozen: dict[float, dict[str, float]],
                    frozen_floor: dict[float, dict[str, float]], n: int) -> dict[str, Any]:
    """The book's rule (:func:`simclr_book.verdict.compare`) on chapter 6's Table 7 rows, top-1 on ``n``
    test images, one seed each: ``t7`` (fraction -> fine-tuned SimCLR against from scratch, at 1% and
    10%; no floor: fine-tuned and supervised accuracies are not representations, as
    :mod:`simclr_book.fullscale` decides the same rows), ``order`` (the gain at 1% against the gain at
    10%, :func:`~simclr_book.verdict.compare_gains`) and ``ftlin`` (fraction -> fine-tuning against the
    frozen encoder with a linear classifier, floored by the random encoder with the same classifier and
    labels, ``frozen_floor``)."""
    from simclr_book.verdict import compare, compare_gains

    def top1(f: float, start: str) -> list[float]:
        return [ft[f, start]["top1"]]

    t7 = {f: compare(f"Table 7: fine-tuned SimCLR > from scratch, {f:.0%} of labels", top1(f, "SimCLR"),
                     top1(f, "scratch"), n=n, sign=+1, a_name="SimCLR + fine-tune", b_name="from scratch",
                     metric="top1", paper=PAPER_T7[f]) for f in PAPER_T7}
    order = compare_gains("Table 7: the gain is largest with the fewest labels", top1(0.01, "SimCLR"),
                          top1(0.01, "scratch"), top1(0.1, "SimCLR"), top1(0.1, "scratch"), n=n, sign=+1,
                          a_name="gain at 1%", b_name="gain at 10%", metric="top1", paper="+27.1 vs +7.4 top-5")
    ftlin = {f: compare(f"fine-tuning > frozen encoder + linear, {f:.0%} of labels", top1(f, "SimCLR"),
                        [frozen[f]["top1"]], n=n, sign=+1, a_name="SimCLR + fine-tune",
                        b_name="frozen SimCLR + linear", metric="top1", paper="not compared in Table 7",
                        floor=frozen_floor[f]["top1"]) for f in frozen}
    return dict(t7=t7, order=order, ftlin=ftlin)


def plot_neighbours(queries: dict[str, dict[str, Any]], data: Sequence[torch.Tensor], pred: torch.Tensor,
                    show: int = 8, classes: Sequence[str] = CIFAR10_CLASSES) -> dict[str, int]:
    """Fig. 6.2: each query (role -> ``i``, the test image's index, and ``top_i``, ``top_s``, ``w``: its
    nearest training images, their similarities and vote weights) with its ``show`` nearest training
    images. Returns, per role, how many of them share the query's true class, and per ``role + " vote"``
    the class the vote chose."""
    import matplotlib.pyplot as plt
    xtr, ytr, xte, yte = data
    fig, axes = plt.subplots(len(queries), show + 1, figsize=(9, 4.3), dpi=100, squeeze=False)
    same = {}
    for r, (role, n) in enumerate(queries.items()):
        i = n["i"]
        axes[r, 0].imshow(xte[i].permute(1, 2, 0).numpy())
        axes[r, 0].set_title(f"query ({role})\n{classes[yte[i]]}\nvote: {classes[pred[i]]}", fontsize=8)
        for j in range(show):
            m = n["top_i"][j]
            axes[r, j + 1].imshow(xtr[m].permute(1, 2, 0).numpy())
            axes[r, j + 1].set_title(f"{classes[ytr[m]]}\ns={n['top_s'][j]:.2f}\nw={n['w'][j]:.0f}", fontsize=8)
        same[role] = int((ytr[n["top_i"][:show]] == yte[i]).sum())
        same[role + " vote"] = int((ytr[n["top_i"][:show]] == pred[i]).sum())
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Two test images and their nearest training images in h (cosine similarity s, vote weight w)",
                 fontsize=9)
    fig.tight_layout()
    return same


def plot_knn_vs_k(ks: Sequence[int], by_t: dict[float, list[float]], linear: float, title: str) -> Any:
    """Fig. 6.3: kNN accuracy against k (log axis) for the weighted vote (t = 0.1, the monitor) and the
    majority vote (the largest t of ``by_t``), with linear evaluation and chance as lines."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 3.6), dpi=100)
    ax.semilogx(ks, [100 * a for a in by_t[0.1]], "o-", label="weighted vote, t = 0.1 (the monitor)")
    ax.semilogx(ks, [100 * a for a in by_t[max(by_t)]], "s--", label="majority vote")
    ax.axhline(100 * linear, color="k", lw=1, ls=":", label="linear evaluation")
    ax.axhline(10, color="grey", lw=1, label="chance")
    ax.axvline(200, color="grey", lw=0.5)
    ax.set_xlabel("k (neighbours)")
    ax.set_ylabel("test top-1 accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_label_fractions(ft: dict[tuple[float, str], dict[str, Any]], frozen: dict[float, dict[str, float]],
                         budget_name: str) -> Any:
    """Fig. 6.4: top-1 and top-5 at each label fraction for the fine-tuned SimCLR encoder, the frozen one
    with a linear classifier and training from scratch (:func:`fine_tune_fractions`,
    :func:`linear_on_fractions`), with chance."""
    import matplotlib.pyplot as plt
    import numpy as np
    fractions = sorted(frozen)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), dpi=100)
    x, bw = np.arange(len(fractions)), 0.27
    for ax, metric in zip(axes, ("top1", "top5")):
        ax.bar(x - bw, [100 * ft[f, "SimCLR"][metric] for f in fractions], bw, label="SimCLR + fine-tune")
        ax.bar(x, [100 * frozen[f][metric] for f in fractions], bw, label="SimCLR frozen + linear")
        ax.bar(x + bw, [100 * ft[f, "scratch"][metric] for f in fractions], bw, label="from scratch")
        ax.axhline(10 if metric == "top1" else 50, color="grey", lw=1)
        ax.set_xticks(x, [f"{f:.0%}\n({ft[f, 'SimCLR']['labels']:,} labels)" for f in fractions])
        ax.set_xlabel("fraction of the training labels", fontsize=9)
        ax.set_ylabel(f"test {metric.replace('top', 'top-')} accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"{metric.replace('top', 'Top-')} on CIFAR-10 ({budget_name} budget)", fontsize=10)
    axes[0].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig
