"""The book's experiments, written once: each finding of the paper, the parts that measure it, their arms.

A **part** is what one command runs on its own (``python -m simclr_book.fullscale PART``; at most 9
minutes on one H100 or H200 at the ``gpu`` budget): a few **arms** (config overrides of the budget's
arm recipe, :func:`simclr_book.budget.arm_config`, or one of the book's shared models), trained over
the part's seeds, and the evaluations it needs. A **finding** names the paper's claim, the parts that
measure it and its **rows**: the comparisons that decide it, each with the paper's number, decided
by the book's one rule (:mod:`simclr_book.verdict`).

The same spec serves every budget: an arm's ``per_budget`` overrides are the only difference between
its ``cpu`` and ``gpu`` versions (e.g. Fig. 7's widths around each budget's base width), and
:data:`EPOCHS` sizes each part's arms per budget. :mod:`simclr_book.plan` prints what a budget runs
and how long it should take; :mod:`simclr_book.fullscale` runs a part and writes its results file.

Book: every chapter's findings table, book/findings.md and the Reproducing page.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

# --------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Arm:
    """One trained model of a part (at each of the part's seeds).

    ``kind``: ``simclr`` (pretrained with :func:`simclr_lite.train.pretrain`, evaluated on h),
    ``views`` (first, second) replace the SimCLR augmentation by Fig. 5's asymmetric pair: one branch
    applies transformation ``first`` then ``second`` (:data:`simclr_lite.augment_fig4.OPERATORS`), the
    other is the image itself (:func:`simclr_book.fullscale.fig5_views`).
    ``supervised`` (a random encoder trained with labels by :func:`simclr_lite.evaluate.fine_tune`,
    its augmentation the SimCLR crop and flip plus the arm's colour ``strength``: Table 1's and Fig. 7's
    supervised column) or ``shared`` (the book's shared model named ``shared``, trained once for every
    chapter). ``overrides`` apply at every budget, ``per_budget[budget]`` on top of them.
    """
    name: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    per_budget: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    kind: str = "simclr"
    shared: str = ""
    views: tuple[str, ...] = ()     # Fig. 5: (first, second) transformation of the augmented branch

    def fields(self, budget: str) -> dict[str, Any]:
        """The config overrides of this arm at ``budget``."""
        return {**self.overrides, **self.per_budget.get(budget, {})}


@dataclass(frozen=True)
class Row:
    """One comparison that decides a finding: ``a`` against ``b``, each ``"arm:metric"``.

    With ``vs`` (two more ``"arm:metric"``), the row compares gains: (a - b) against (vs[0] - vs[1])
    (:func:`simclr_book.verdict.compare_gains`). ``sign``: +1 the paper says a > b, -1 a < b, 0 equal.
    Metrics: ``knn`` / ``linear`` on h, ``knn_z`` / ``linear_z`` on z = g(h), ``top1`` of a supervised
    arm, ``ft1`` / ``ft10`` / ``scratch1`` / ``scratch10`` (Table 7), ``pixels_knn`` / ``pixels_linear``
    of the ``floor`` pseudo-arm.
    """
    label: str
    a: str
    b: str
    paper: str
    sign: int = +1
    vs: tuple[str, ...] = ()

    def arms(self) -> tuple[str, ...]:
        return tuple(ref.split(":")[0] for ref in (self.a, self.b, *self.vs))


@dataclass(frozen=True)
class Part:
    """What one command measures (see the module docstring). ``seeds[budget]``: the seeds it trains
    (verdicts need 3 unless a gap is at least twice its test-set bar); ``evals``: what it measures
    beyond kNN and linear evaluation of h (``h_and_z``, ``tsne``, ``finetune``, ``throughput``);
    ``gpu_order``: its place in the order the book's GPU time is spent (0: after the ordered ones)."""
    name: str
    chapter: int
    title: str
    arms: tuple[Arm, ...]
    seeds: Mapping[str, tuple[int, ...]]
    evals: tuple[str, ...] = ()
    gpu_order: int = 0

    def arm(self, name: str) -> Arm:
        for a in self.arms:
            if a.name == name:
                return a
        raise KeyError(f"part {self.name} has no arm {name!r}; it has {', '.join(a.name for a in self.arms)}")


@dataclass(frozen=True)
class Finding:
    """A finding of the paper (book/findings.md), the parts that measure it and the rows that decide it;
    ``note``: why it has no rows or no part (e.g. no training is involved)."""
    id: int
    claim: str
    where: str
    chapter: int
    parts: tuple[str, ...]
    rows: tuple[Row, ...]
    note: str = ""


# ------------------------------------------------------------------------------------------- the parts
#: Epochs of every arm of a part, per budget. At ``gpu`` every arm gets at least the optimiser steps of
#: its ``cpu`` counterpart (a test checks it) and every part fits 9 minutes on one H100 (plan estimate).
EPOCHS: dict[str, dict[str, int]] = {
    "ch02-table1": {"smoke": 1, "cpu": 4, "gpu": 15},
    "ch02-fig5": {"smoke": 1, "cpu": 4, "gpu": 12},
    # chapter 3 trains 33 arms (its validation grid, and the specs' arms at 3 seeds): at 3 epochs, one fewer
    # than the other chapters' arms, it runs in under an hour on 2 CPU cores from an empty run cache
    "ch03-table4": {"smoke": 1, "cpu": 3, "gpu": 12},
    "ch03-table5": {"smoke": 1, "cpu": 3, "gpu": 15},
    "ch04-fig7": {"smoke": 1, "cpu": 4, "gpu": 15},
    "ch05-negatives": {"smoke": 1, "cpu": 2, "gpu": 10},     # Fig. 9's short run (FIG9_EPOCHS[...][0])
    "ch05-lr": {"smoke": 1, "cpu": 2, "gpu": 10},
    "ch07-scaling": {"smoke": 1, "cpu": 1, "gpu": 2},
}
#: Fig. 9's two training lengths per budget (equal epochs: the paper's design).
FIG9_EPOCHS: dict[str, tuple[int, int]] = {"smoke": (1, 2), "cpu": (2, 6), "gpu": (10, 30)}
CPU_SEEDS = (0, 1, 2)

_SUPERVISED = dict(kind="supervised")
_STRENGTHS = (("0.125", 0.125), ("0.25", 0.25), ("0.5", 0.5), ("1", 1.0))


def _fig9_arms() -> tuple[Arm, ...]:
    """Batch 256 and 1024 at a short and a long run, each at its epochs (equal epochs, Fig. 9)."""
    arms = []
    for which, k in (("short", 0), ("long", 1)):
        for b in (256, 1024):
            arms.append(Arm(f"b{b}-{which}", dict(batch_size=b),
                            {bud: dict(epochs=e[k]) for bud, e in FIG9_EPOCHS.items()}))
    return tuple(arms)


def _heads(seed: int) -> tuple[Arm, ...]:
    """Fig. 8's heads at ``seed``: the book's shared models (the nonlinear one is the ``main`` model).

    No head only at seed 0: its gap to the nonlinear head (+6.1 points of linear evaluation at cpu, +5.2 at
    full scale, against a test-set bar of about 1.4 on 10,000 test images) is more than twice the test-set
    bar, so one seed decides it under the rule (:mod:`simclr_book.verdict`; a smaller gap would say "needs 3
    seeds"), and its two more 24-epoch models would cost about 55 minutes on 2 CPU cores. The nonlinear and
    linear heads (about +1 apart) get 3 seeds.
    """
    heads = (("nonlinear", "main"), ("linear", "linear-head")) + ((("none", "no-head"),) if seed == 0 else ())
    return tuple(Arm(f"head-{h}", dict(seed=seed) if seed else {}, kind="shared", shared=m) for h, m in heads)


PARTS: dict[str, Part] = {p.name: p for p in (
    Part("ch05-fig9", 5, "Fig. 9: batch 256 against 1024 at a short and a long run, equal epochs",
         _fig9_arms(), {"smoke": (0,), "cpu": CPU_SEEDS, "gpu": (0,)}, gpu_order=1),
    *(Part(f"ch04-fig8-seed{s}", 4, f"Fig. 8: nonlinear, linear{' and no' if s == 0 else ''} projection head, "
           f"h and z = g(h) (seed {s})", _heads(s), {"smoke": (s,), "cpu": (s,), "gpu": (s,)}, evals=("h_and_z",),
           gpu_order=2)
      for s in (0, 1, 2)),
    Part("ch04-tsne", 4, "B.4: the shared model's h and z = g(h): t-SNE maps over seeds, and class separation "
         "in the original spaces (kNN, linear, cosine silhouette with intervals)",
         (Arm("head-nonlinear", kind="shared", shared="main"),), {"smoke": (0,), "cpu": (0,), "gpu": (0,)},
         evals=("h_and_z", "tsne"), gpu_order=2),
    Part("ch02-table1", 2, "Table 1: colour distortion strength s, SimCLR and supervised",
         tuple(Arm(f"s{t}", dict(strength=s)) for t, s in _STRENGTHS)
         + tuple(Arm(f"sup-s{t}", dict(strength=s), **_SUPERVISED) for t, s in _STRENGTHS),
         {"smoke": (0,), "cpu": CPU_SEEDS, "gpu": (0,)}, gpu_order=3),
    Part("ch02-fig5", 2, "Fig. 5: single transformations and pairs (one branch augmented, the other the image)",
         tuple(Arm(f"{a}>{b}" if a != b else a, views=(a, b)) for a, b in
               (("crop", "crop"), ("color", "color"), ("crop", "color"), ("crop", "cutout"), ("crop", "rotate"))),
         {"smoke": (0,), "cpu": CPU_SEEDS, "gpu": (0,)}, gpu_order=7),
    Part("ch04-fig7", 4, "Fig. 7: wider and deeper encoders, SimCLR and supervised",
         (Arm("w/4", per_budget={"smoke": dict(width=0.0625), "cpu": dict(width=0.0625), "gpu": dict(width=0.25)}),
          Arm("w", per_budget={"smoke": dict(width=0.125), "cpu": dict(width=0.25), "gpu": dict(width=1.0)}),
          Arm("deeper", per_budget={"smoke": dict(arch="resnet18"), "cpu": dict(arch="resnet18"),
                                    "gpu": dict(arch="resnet34")}),
          Arm("sup-w/4", per_budget={"smoke": dict(width=0.0625), "cpu": dict(width=0.0625),
                                     "gpu": dict(width=0.25)}, **_SUPERVISED),
          Arm("sup-w", per_budget={"smoke": dict(width=0.125), "cpu": dict(width=0.25), "gpu": dict(width=1.0)},
              **_SUPERVISED)),
         {"smoke": (0,), "cpu": CPU_SEEDS, "gpu": (0,)}, gpu_order=4),
    Part("ch03-table5", 3, "Table 5: l2 normalisation and temperature",
         (Arm("l2-t0.1", dict(temperature=0.1)), Arm("l2-t0.5", dict(temperature=0.5)),
          Arm("l2-t1", dict(temperature=1.0)), Arm("nol2-t10", dict(temperature=10.0, normalize=False))),
         {"smoke": (0,), "cpu": CPU_SEEDS, "gpu": (0,)}, gpu_order=5),
    Part("ch06-evaluation", 6, "Tables 6-7: linear evaluation and fine-tuning on 1% / 10% of the labels "
         "against training from scratch", (Arm("main", kind="shared", shared="main"),),
         {"smoke": (0,), "cpu": (0,), "gpu": (0,)}, evals=("finetune",), gpu_order=6),
    Part("ch07-scaling", 7, "Scaling on one device: batch 512 / 1024 / 2048, images/s and peak memory",
         tuple(Arm(f"b{b}", dict(batch_size=b)) for b in (512, 1024, 2048)),
         {"smoke": (0,), "cpu": (0,), "gpu": (0,)}, evals=("throughput",), gpu_order=6),
    Part("ch01-floors", 1, "SimCLR against raw pixels and a random encoder (the floors of every verdict)",
         (Arm("main", kind="shared", shared="main"),), {"smoke": (0,), "cpu": (0,), "gpu": (0,)}, gpu_order=6),
    Part("ch03-table4", 3, "Table 4: NT-Xent against NT-Logistic and the margin triplet, with and without "
         "semi-hard negative mining", (
             # each loss at the value chapter 3 chooses on its validation split at cpu (5,000 held-out training
             # images, never the test set; Table 4's "tuned per loss"); NT-Xent's is Table 5's l2-t0.1 arm
             Arm("nt-xent", dict(loss="nt_xent", temperature=0.1)),
             Arm("nt-logistic", dict(loss="nt_logistic", temperature=0.1)),
             Arm("nt-logistic-sh", dict(loss="nt_logistic", temperature=1.0, semi_hard=True)),
             Arm("margin", dict(loss="margin_triplet", margin=0.4)),
             Arm("margin-sh", dict(loss="margin_triplet", margin=0.2, semi_hard=True))),
         {"smoke": (0,), "cpu": CPU_SEEDS, "gpu": (0,)}, gpu_order=7),
    Part("ch05-negatives", 5, "Fig. 9's mechanism: the same images, steps and batch (1024), negatives from "
         "sub-batches of 64 / 256 / 1024",
         # Fig. 9's short run at batch 1024 with the loss's negatives restricted; g = 1024 is the whole batch
         # (neg_group 0): the same run (the same cache key) as part ch05-fig9's arm b1024-short, trained once
         tuple(Arm(f"neg{g}", dict(batch_size=1024, neg_group=g if g < 1024 else 0)) for g in (64, 256, 1024)),
         {"smoke": (0,), "cpu": CPU_SEEDS, "gpu": (0,)}, gpu_order=7),
    Part("ch05-lr", 5, "Appendix B.1: square-root against linear learning-rate scaling at batch 256, short",
         (Arm("linear", dict(batch_size=256)),
          Arm("sqrt", dict(batch_size=256, lr_scaling="sqrt", lr=0.075))),
         {"smoke": (0,), "cpu": CPU_SEEDS, "gpu": (0,)}, gpu_order=7),
)}

# ---------------------------------------------------------------------------------------- the findings
_T1 = "SimCLR 59.6 / 61.0 / 62.6 / 63.2 at s = 1/8, 1/4, 1/2, 1"
FINDINGS: tuple[Finding, ...] = (
    Finding(1, "no single augmentation suffices; crop + colour is the key composition", "Fig. 5", 2, ("ch02-fig5",), (
        Row("Fig. 5: crop -> colour beats crop alone", "crop>color:linear", "crop:linear", "far above crop alone"),
        Row("Fig. 5: crop -> colour beats colour alone", "crop>color:linear", "color:linear",
            "every single transformation far below"),
        Row("Fig. 5: crop -> colour beats crop -> cutout", "crop>color:linear", "crop>cutout:linear",
            "crop -> colour is the best pair"),
        Row("Fig. 5: crop -> colour beats crop -> rotate", "crop>color:linear", "crop>rotate:linear",
            "crop -> colour is the best pair"))),
    Finding(2, "crops of one image share a colour histogram, a shortcut", "Fig. 6", 2, (), (),
            note="no training: the same at any scale"),
    Finding(3, "stronger colour distortion helps SimCLR, not supervised learning", "Table 1", 2, ("ch02-table1",), (
        Row("Table 1: SimCLR, s = 1/8 -> 1/2", "s0.5:linear", "s0.125:linear", "59.6% -> 62.6% (+3.0)"),
        Row("Table 1: SimCLR, s = 1/2 -> 1", "s1:linear", "s0.5:linear", "62.6% -> 63.2% (+0.6)"),
        Row("Table 1: supervised, s = 1/8 -> 1", "sup-s1:top1", "sup-s0.125:top1", "77.0% -> 75.7% (-1.3)", sign=-1),
        Row("Table 1: s = 1/8 -> 1 helps SimCLR more than supervised", "s1:linear", "s0.125:linear",
            "+3.6 vs -1.3 points", vs=("sup-s1:top1", "sup-s0.125:top1")))),
    Finding(4, "bigger encoders help, and help SimCLR more than supervised learning", "Fig. 7", 4, ("ch04-fig7",), (
        Row("Fig. 7: 4x wider helps SimCLR", "w:linear", "w/4:linear", "R50 1x -> 4x: 69.3% -> 76.5%"),
        Row("Fig. 7: width helps SimCLR more than supervised", "w:linear", "w/4:linear",
            "the SimCLR gap is larger (Fig. 7)", vs=("sup-w:top1", "sup-w/4:top1")),
        Row("Fig. 7: deeper helps SimCLR", "deeper:linear", "w:linear", "R18 < R34 < R50 (Fig. 7)"))),
    Finding(5, "a nonlinear projection head beats a linear one or none; h beats z = g(h)", "Fig. 8", 4,
            ("ch04-fig8-seed0", "ch04-fig8-seed1", "ch04-fig8-seed2"), (
        Row("Fig. 8: nonlinear > linear head (h)", "head-nonlinear:linear", "head-linear:linear", "about +3"),
        Row("Fig. 8: nonlinear head > none (h)", "head-nonlinear:linear", "head-none:linear", "more than +10"),
        Row("Fig. 8: h > z = g(h), nonlinear head", "head-nonlinear:linear", "head-nonlinear:linear_z",
            "more than +10"))),
    Finding(6, "h keeps information about the transformation that z = g(h) discards", "Table 3", 4, (), (),
            note="chapter 4 decides it at cpu by the one rule on its probes' held-out images (the test-set bar of "
                 "their n predictions), with the transformation added to pretraining as in the paper"),
    # t-SNE keeps neighbourhoods, so the kNN accuracy in the original space (cosine, k = 200) is the measure of
    # the class separation a t-SNE map shows; chapter 4 also shows the cosine silhouette of h and z with its
    # interval, and the maps of several t-SNE seeds (part ch04-tsne). The linear probe of h against z is
    # finding 5's third row (one comparison is not counted twice).
    Finding(7, "t-SNE: classes are better separated in h than in z", "Fig. B.4", 4,
            ("ch04-tsne", "ch04-fig8-seed0", "ch04-fig8-seed1", "ch04-fig8-seed2"), (
        Row("B.4: t-SNE, classes separate better in h than in z (kNN in the original spaces)", "head-nonlinear:knn",
            "head-nonlinear:knn_z", "qualitative (t-SNE maps)"),)),
    Finding(8, "a linear projection head is approximately low-rank", "Fig. B.4", 4, (), (),
            note="a spectrum, not an accuracy: chapter 4 decides it at cpu on the linear-head model's 3 seeds "
                 "(effective rank trained against at initialisation, the rule's seed bar)"),
    Finding(9, "NT-Xent beats the other losses; semi-hard mining helps them", "Table 4", 3, ("ch03-table4",), (
        Row("Table 4: NT-Xent > NT-Logistic", "nt-xent:linear", "nt-logistic:linear", "63.9% vs 51.6%"),
        Row("Table 4: NT-Xent > margin triplet", "nt-xent:linear", "margin:linear", "63.9% vs 50.9%"),
        Row("Table 4: NT-Xent > NT-Logistic (semi-hard)", "nt-xent:linear", "nt-logistic-sh:linear",
            "63.9% vs 57.9%"),
        Row("Table 4: NT-Xent > margin triplet (semi-hard)", "nt-xent:linear", "margin-sh:linear", "63.9% vs 57.5%"),
        Row("Table 4: semi-hard mining helps NT-Logistic", "nt-logistic-sh:linear", "nt-logistic:linear",
            "51.6% -> 57.9%"),
        Row("Table 4: semi-hard mining helps the margin triplet", "margin-sh:linear", "margin:linear",
            "50.9% -> 57.5%"))),
    Finding(10, "l2 normalisation and the temperature matter", "Table 5", 3, ("ch03-table5",), (
        Row("Table 5: l2 (tau 0.1) > no l2 (tau 10)", "l2-t0.1:linear", "nol2-t10:linear", "64.4% vs 57.2%"),
        Row("Table 5: tau 0.1 > tau 1 (l2)", "l2-t0.1:linear", "l2-t1:linear", "64.4% vs 58.0%"),
        Row("Table 5: tau 0.5 > tau 1 (l2)", "l2-t0.5:linear", "l2-t1:linear", "60.7% vs 58.0%"))),
    Finding(11, "larger batches help most when training is short", "Fig. 9", 5, ("ch05-fig9", "ch05-negatives"), (
        Row("Fig. 9: batch 1024 > 256, short run", "b1024-short:linear", "b256-short:linear",
            "larger batches ahead at 100 epochs"),
        Row("Fig. 9: the gain of 1024 over 256 shrinks with longer training", "b1024-short:linear",
            "b256-short:linear", "the gap closes by 800 epochs", vs=("b1024-long:linear", "b256-long:linear")),
        Row("Fig. 9's mechanism: more negatives, same images and steps", "neg1024:linear", "neg64:linear",
            "more negatives help (Sec. 3 / Fig. 9)"))),
    Finding(12, "square-root learning-rate scaling helps small batches and short runs", "Appendix B.1", 5,
            ("ch05-lr",), (
        Row("B.1: square-root > linear scaling at batch 256, short", "sqrt:linear", "linear:linear",
            "sqrt better at small batch, few epochs"),)),
    Finding(13, "per-device batch norm leaks information; global BN removes the leak", "Sec. 2.2", 5, (), (),
            note="needs several processes (torchrun): chapter 5 measures it on CPU processes"),
    Finding(14, "a SimCLR encoder fine-tuned on few labels beats training from scratch", "Table 7", 6,
            ("ch06-evaluation",), (
        Row("Table 7: fine-tuned SimCLR > from scratch, 1% of labels", "main:ft1", "main:scratch1",
            "R50: 75.5% vs 48.4% top-5"),
        Row("Table 7: fine-tuned SimCLR > from scratch, 10% of labels", "main:ft10", "main:scratch10",
            "R50: 87.8% vs 80.4% top-5"))),
)


def finding_of(fid: int) -> Finding:
    return next(f for f in FINDINGS if f.id == fid)


def part_epochs(part: Part, arm: Arm, budget: str) -> int | None:
    """The epochs of ``arm`` of ``part`` at ``budget`` (None: the budget's own, e.g. a shared model's)."""
    if "epochs" in arm.fields(budget):
        return int(arm.fields(budget)["epochs"])
    return EPOCHS.get(part.name, {}).get(budget)


def command(part: str) -> str:
    """The one command that measures ``part`` at full scale and writes its results file."""
    return f"python -m simclr_book.fullscale {part}"
