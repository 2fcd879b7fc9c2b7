"""Budgets: one setting that sizes every experiment of the book, the same code at every size.

The book's chapters (book/intro) read the budget from the ``SIMCLR_BUDGET``
environment variable (or their first cell) and size their runs from it:

- ``smoke``: what CI runs (``pytest --nbval``); seconds per experiment, on a
  few thousand images; only checks that the code works and numbers are sane.
- ``cpu``: a reader without a GPU, and the outputs stored in the book;
  sized for 2 CPU cores.
- ``gpu``: ResNet-18 with the CIFAR stem at the paper's CIFAR-10 settings
  (Appendix B.9) on one GPU.
- ``auto`` (the default, also when ``SIMCLR_BUDGET`` is unset): ``gpu`` when
  CUDA is visible, else ``cpu``. :meth:`Budget.how_picked` says which one a
  chapter got and why; every chapter prints it.

This module holds no method of the paper; it keeps the chapters' set-up
(data, base config, shared models, wall-clock timing, tables, results of the
full-scale runs) in one place so that every chapter reports its budget,
device and wall time the same way. Devices are named by
:func:`simclr_lite.distributed.describe_device`.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from simclr_lite.config import Config, preset
from simclr_lite.data import label_subset, load_cifar10
from simclr_lite.distributed import describe_device
from simclr_lite.errors import ConfigError

BUDGETS = ("smoke", "cpu", "gpu")   # the sizes; SIMCLR_BUDGET=auto (the default) picks cpu or gpu


@dataclass(frozen=True)
class Budget:
    """Sizes of a chapter's experiments at one budget (see the module docstring)."""
    name: str
    train_images: int   # CIFAR-10 training images the chapter's runs use (class-balanced subset)
    test_images: int    # test images for kNN / linear evaluation
    arch: str           # encoder of the chapter's runs
    width: float        # its width multiplier
    stem_stride: int    # CIFAR stem stride (2: 4x fewer activations; cpu and smoke budgets)
    batch_size: int     # pretraining batch of a single run
    epochs: int         # epochs of the chapter's main pretraining run
    short_epochs: int   # epochs of each run in a sweep or grid (many runs)
    device: str         # "cpu" or "cuda"
    # the shared models (:func:`shared_model`): trained once on the full-size data, reused by the chapters
    model_train_images: int = 50000   # training images of the shared models (all of CIFAR-10's)
    model_test_images: int = 10000    # test images they are evaluated on
    model_epochs: int = 24            # epochs of the shared models (each budget below sets its own)
    arm_epochs: int = 4               # epochs of each arm of a chapter's sweep on the full-size data
    # how get_budget chose this budget, e.g. "SIMCLR_BUDGET=smoke" (not a size: two budgets that differ
    # only in it are equal)
    picked_by: str = field(default="", compare=False)

    def config(self, **overrides: Any) -> Config:
        """A pretraining :class:`~simclr_lite.config.Config` at this budget, plus overrides.

        Starts from the ``cifar10-cpu`` preset's recipe (LARS, tau 0.2, crop
        scale 0.2-1) for ``smoke`` and ``cpu`` and from ``cifar10-gpu`` (the
        paper's B.9 settings) for ``gpu``.
        """
        base = "cifar10-gpu" if self.name == "gpu" else "cifar10-cpu"
        # the chapters' runs: a fixed number of epochs (so no time budget: reproducible step for
        # step), eager, the paper's head
        fields = dict(arch=self.arch, width=self.width, stem_stride=self.stem_stride,
                      batch_size=self.batch_size, epochs=self.epochs, device=self.device,
                      knn_every=0, compile=False, log_every=10, proj_hidden=0)
        if self.name == "smoke":
            fields.update(warmup_epochs=0)
        fields.update(overrides)
        return preset(base, **fields)

    def describe(self) -> str:
        """One line for a chapter's output: budget, data size, model and device."""
        return (f"budget {self.name}: {self.train_images:,} train / {self.test_images:,} test CIFAR-10 images, "
                f"{self.arch} x{self.width:g} (stem stride {self.stem_stride}), batch {self.batch_size}, "
                f"{self.epochs} epochs (sweeps: {self.short_epochs}), on {describe_device(self.device)}")

    def how_picked(self) -> str:
        """One line for a chapter's set-up cell: which budget it runs and how :func:`get_budget` chose it,
        e.g. ``the cpu budget (SIMCLR_BUDGET unset, so auto: no CUDA GPU is visible), device cpu``."""
        return f"the {self.name} budget ({self.picked_by or 'chosen by name'}), device {self.device}"


_BUDGETS = {
    "smoke": Budget("smoke", train_images=2048, test_images=512, arch="resnet10", width=0.125, stem_stride=2,
                    batch_size=128, epochs=2, short_epochs=1, device="cpu",
                    model_train_images=2048, model_test_images=512, model_epochs=2, arm_epochs=1),
    # cpu: the main model is the cifar10-cpu preset's recipe for 24 epochs (55.9% kNN on all 10,000 test
    # images, 27 minutes on 2 idle cores; 16 epochs gave 53.7%, 20 gave 54.7%); an arm of 4 epochs on all
    # 50,000 images reached 48.4% kNN (raw pixels 44.2%, random encoder 29.0%)
    "cpu": Budget("cpu", train_images=10000, test_images=2000, arch="resnet10", width=0.25, stem_stride=2,
                  batch_size=256, epochs=8, short_epochs=3, device="cpu",
                  model_train_images=50000, model_test_images=10000, model_epochs=24, arm_epochs=4),
    # gpu: a budget of minutes (issue 30): ResNet-18 at the paper's CIFAR-10 settings, sized so that every
    # part of simclr_book.specs runs in at most 9 minutes on one H100 or H200 (python -m simclr_book.plan);
    # a ResNet-18 epoch takes about 3.5 s at batch 512 on one H200
    "gpu": Budget("gpu", train_images=50000, test_images=10000, arch="resnet18", width=1.0, stem_stride=1,
                  batch_size=512, epochs=30, short_epochs=10, device="cuda",
                  model_train_images=50000, model_test_images=10000, model_epochs=24, arm_epochs=15),
}


def budget_sizes(name: str) -> Budget:
    """The sizes of budget ``name`` on its own device, without checking that the device is here: what a
    plan prints (:mod:`simclr_book.plan`) on any machine. Training uses :func:`get_budget`."""
    if name not in _BUDGETS:
        raise ConfigError(f"unknown budget {name!r}; choose one of {', '.join(BUDGETS)}")
    return replace(_BUDGETS[name], picked_by=f"budget_sizes({name!r})")


def get_budget(name: str | None = None) -> Budget:
    """The budget called ``name``, else ``$SIMCLR_BUDGET``, else ``auto``.

    ``auto`` is ``gpu`` when ``torch.cuda.is_available()``, else ``cpu``. ``$SIMCLR_DEVICE`` (cpu or
    cuda) runs a budget's sizes on another device: ``SIMCLR_BUDGET=smoke SIMCLR_DEVICE=cuda`` is the GPU
    check of every chapter (``scripts/device_check.sh``). The returned budget's
    :meth:`~Budget.how_picked` says which rule chose it.
    """
    env = os.environ.get("SIMCLR_BUDGET", "").strip()   # set but empty: unset
    given = (name or env or "auto").strip().lower()
    how = (f"get_budget({name!r})" if name else f"SIMCLR_BUDGET={env}" if env else "SIMCLR_BUDGET unset")
    if given == "auto":
        cuda = torch.cuda.is_available()
        given = "gpu" if cuda else "cpu"
        how += (", so auto: " if how == "SIMCLR_BUDGET unset" else ": ") + \
            ("a CUDA GPU is visible" if cuda else "no CUDA GPU is visible")
    if given not in _BUDGETS:
        raise ConfigError(f"unknown budget {given!r}; set SIMCLR_BUDGET to auto or one of {', '.join(BUDGETS)}")
    b = _BUDGETS[given]
    device = os.environ.get("SIMCLR_DEVICE", "").strip().lower()   # the GPU check: smoke sizes on cuda
    if device:
        if device not in ("cpu", "cuda"):
            raise ConfigError(f"SIMCLR_DEVICE must be cpu or cuda, got {device!r}")
        b, how = replace(b, device=device), how + f"; SIMCLR_DEVICE={device}"
    if b.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"the {b.name} budget on cuda needs a CUDA GPU and none is visible; use "
                          f"SIMCLR_BUDGET=cpu (or auto) and leave SIMCLR_DEVICE unset")
    return replace(b, picked_by=how)


def load_data(budget: Budget, root: str | os.PathLike | None = None, seed: int = 0, full: bool = False,
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(train_x, train_y, test_x, test_y)``: class-balanced CIFAR-10 subsets of the budget's size.

    ``full=True``: the size of the shared models (``model_train_images`` / ``model_test_images``:
    all of CIFAR-10 at the ``cpu`` and ``gpu`` budgets).

    Reads the copy under ``root`` / ``$SIMCLR_DATA`` / ``data/`` and lets
    torchvision download it into ``data/`` when none is found and no root was
    named (see :func:`simclr_lite.data.load_cifar10`).
    """
    download = root is None and not os.environ.get("SIMCLR_DATA")
    xtr, ytr = load_cifar10(root, train=True, download=download)
    xte, yte = load_cifar10(root, train=False, download=download)
    n_train, n_test = ((budget.model_train_images, budget.model_test_images) if full
                       else (budget.train_images, budget.test_images))
    if n_train < len(xtr):
        keep = label_subset(ytr, n_train / len(xtr), seed=seed)
        xtr, ytr = xtr[keep], ytr[keep]
    if n_test < len(xte):
        keep = label_subset(yte, n_test / len(xte), seed=seed + 1)
        xte, yte = xte[keep], yte[keep]
    return xtr, ytr, xte, yte


# The shared models: what each changes from the budget's base recipe (Budget.config). Trained once per
# budget and reused by every chapter that evaluates a trained encoder (issue: "trained models, trained once").
SHARED_MODELS: dict[str, dict[str, Any]] = {
    "main": dict(),                          # the recipe as it is: chapter 1's run, chapters 4 and 6's model
    "linear-head": dict(head="linear"),      # Fig. 8 / Appendix B.4: a linear projection head
    "no-head": dict(head="none"),            # Fig. 8: z = h
}


def shared_config(budget: Budget, name: str = "main") -> Config:
    """The config of shared model ``name`` at ``budget``: the cifar10-cpu preset's recipe (its 2048-wide
    head) for ``model_epochs`` epochs, with a kNN point every quarter of the run (bank: 10,000 images)."""
    if name not in SHARED_MODELS:
        raise ConfigError(f"unknown shared model {name!r}; choose one of {', '.join(SHARED_MODELS)}")
    fields = dict(epochs=budget.model_epochs, knn_every=max(1, budget.model_epochs // 4), log_every=20,
                  knn_bank=min(10000, budget.model_train_images))
    if budget.name != "gpu":
        fields.update(proj_hidden=2048)
    else:       # the cpu models' batch, so the gpu models get as many optimiser steps per epoch (issue 30)
        fields.update(batch_size=_BUDGETS["cpu"].batch_size)
    return budget.config(**{**fields, **SHARED_MODELS[name]})


def shared_model(name: str = "main", budget: Budget | None = None,
                 data: tuple[torch.Tensor, ...] | None = None, progress: bool | None = None) -> dict[str, Any]:
    """Shared model ``name`` of ``budget``: trained on the first call, loaded from the run cache after.

    Returns :func:`simclr_book.cache.cached_pretrain`'s summary (``model``, ``history``, ``cached``,
    ``wall_time_s`` of the training, ``knn_top1`` on ``model_test_images`` test images, ``config``).
    ``data`` saves reloading ``load_data(budget, full=True)`` when the chapter already has it;
    ``progress`` as :func:`simclr_book.cache.cached_pretrain` (None: a bar when a person runs the notebook).
    """
    from simclr_book.cache import cached_pretrain

    budget = budget or get_budget()
    cfg = shared_config(budget, name)
    data = data if data is not None else load_data(budget, full=True)
    return cached_pretrain(cfg, data, name=f"{budget.name}-{name}", progress=progress)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown pipe table (``display(Markdown(...))`` renders it in the book); ``|`` in cells is escaped."""
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


GPU_RESULTS = Path(__file__).resolve().parents[1] / "book" / "results" / "gpu"


def pct(v: float | None) -> str:
    """An accuracy (a fraction) as the chapters print it, ``55.9%``; ``-`` for None.

    >>> pct(0.5592), pct(None)
    ('55.9%', '-')
    """
    return "-" if v is None else f"{100 * v:.1f}%"


def glue(name: str, value: Any) -> None:
    """Store ``value`` for the chapter's text (``{glue:text}`name```, e.g. the wall time in its opening box);
    a no-op where myst-nb (the book's builder) is not installed, e.g. on Colab."""
    try:
        from myst_nb import glue as _glue
    except ImportError:
        return
    _glue(name, value, display=False)


class Stopwatch:
    """Wall-clock time of a ``with`` block: ``with Stopwatch() as sw: ...; sw.seconds``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._t0 = 0.0

    def __enter__(self) -> "Stopwatch":
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0

    def __str__(self) -> str:
        s = self.seconds
        return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def losses_of(summary: dict[str, Any]) -> list[float]:
    """A run's logged training losses (means over windows of ``log_every`` steps), or its epoch means where
    fewer were logged: the curves chapters 3 and 4 draw."""
    steps = [m["loss"] for m in summary["history"] if m["kind"] == "step"]
    return steps if len(steps) >= 2 else [m["loss"] for m in summary["history"] if m["kind"] == "epoch"]


def arm_config(budget: Budget, **overrides: Any) -> Config:
    """An arm of a chapter's sweep: the main shared model's recipe (:func:`shared_config`) for
    ``budget.arm_epochs`` epochs, with no kNN points during training, plus ``overrides``.

    Every arm of chapters 2-5 starts here, so that two arms differ only in the variable they study.
    """
    base = shared_config(budget, "main")
    return budget.config(**{**{k: getattr(base, k) for k in ("proj_hidden", "knn_bank", "log_every")},
                            "epochs": budget.arm_epochs, "knn_every": 0, **overrides})


def train_arm(name: str, budget: Budget, data: tuple[torch.Tensor, ...], augment: Any = None,
              augment_key: str | None = None, **overrides: Any) -> dict[str, Any]:
    """Arm ``name`` of ``budget`` (:func:`arm_config` plus ``overrides``) on ``data``: trained on the first
    call, loaded from the run cache after (:func:`simclr_book.cache.cached_pretrain`, which also explains
    ``augment`` / ``augment_key``). The summary as :func:`shared_model` returns it."""
    from simclr_book.cache import cached_pretrain

    cfg = train_arm_config(budget, data, **overrides)
    return cached_pretrain(cfg, data, name=f"{budget.name}-{name}", augment=augment, augment_key=augment_key)


def train_arm_config(budget: Budget, data: tuple[torch.Tensor, ...], **overrides: Any) -> Config:
    """The config :func:`train_arm` trains: :func:`arm_config` plus ``overrides``, logging four loss points
    per epoch of ``data`` unless ``log_every`` is among them (whichever chapter trains the arm first)."""
    cfg = arm_config(budget, **overrides)
    if "log_every" not in overrides:
        cfg = replace(cfg, log_every=max(1, len(data[0]) // cfg.batch_size // 4))
    return cfg
