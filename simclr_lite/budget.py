"""Budgets: one setting that sizes every experiment of the book, the same code at every size.

The book's chapters (book/intro) read the budget from the ``SIMCLR_BUDGET``
environment variable (or their first cell) and size their runs from it:

- ``smoke``: what CI runs (``pytest --nbval``); seconds per experiment, on a
  few thousand images; only checks that the code works and numbers are sane.
- ``cpu``: the default for a reader and for the outputs stored in the book;
  a chapter finishes in about 10 minutes on 2 CPU cores.
- ``gpu``: ResNet-18 with the CIFAR stem at the paper's CIFAR-10 settings
  (Appendix B.9) on one GPU.

This module holds no method of the paper; it keeps the chapters' set-up
(data, base config, wall-clock timing, machine description) in one place so
that every chapter reports its budget, device and wall time the same way.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import torch

from .data import label_subset, load_cifar10
from .errors import ConfigError
from .config import Config, preset
from .distributed import describe_device

BUDGETS = ("smoke", "cpu", "gpu")


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
                f"{self.epochs} epochs (sweeps: {self.short_epochs}), on {machine(self.device)}")


_BUDGETS = {
    "smoke": Budget("smoke", train_images=2048, test_images=512, arch="resnet10", width=0.125, stem_stride=2,
                    batch_size=128, epochs=2, short_epochs=1, device="cpu"),
    "cpu": Budget("cpu", train_images=10000, test_images=2000, arch="resnet10", width=0.25, stem_stride=2,
                  batch_size=256, epochs=8, short_epochs=3, device="cpu"),
    "gpu": Budget("gpu", train_images=50000, test_images=10000, arch="resnet18", width=1.0, stem_stride=1,
                  batch_size=512, epochs=200, short_epochs=50, device="cuda"),
}


def get_budget(name: str | None = None) -> Budget:
    """The budget called ``name``, else ``$SIMCLR_BUDGET``, else ``cpu``."""
    name = (name or os.environ.get("SIMCLR_BUDGET") or "cpu").strip().lower()
    if name not in _BUDGETS:
        raise ConfigError(f"unknown budget {name!r}; set SIMCLR_BUDGET to one of {', '.join(BUDGETS)}")
    b = _BUDGETS[name]
    if b.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("the gpu budget needs a CUDA GPU and none is visible; use SIMCLR_BUDGET=cpu")
    return b


def load_data(budget: Budget, root: str | os.PathLike | None = None, seed: int = 0,
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(train_x, train_y, test_x, test_y)``: class-balanced CIFAR-10 subsets of the budget's size.

    Reads the copy under ``root`` / ``$SIMCLR_DATA`` / ``data/`` and lets
    torchvision download it into ``data/`` when none is found and no root was
    named (see :func:`simclr_lite.data.load_cifar10`).
    """
    download = root is None and not os.environ.get("SIMCLR_DATA")
    xtr, ytr = load_cifar10(root, train=True, download=download)
    xte, yte = load_cifar10(root, train=False, download=download)
    if budget.train_images < len(xtr):
        keep = label_subset(ytr, budget.train_images / len(xtr), seed=seed)
        xtr, ytr = xtr[keep], ytr[keep]
    if budget.test_images < len(xte):
        keep = label_subset(yte, budget.test_images / len(xte), seed=seed + 1)
        xte, yte = xte[keep], yte[keep]
    return xtr, ytr, xte, yte


machine = describe_device   # the device as results files name it, e.g. ``CPU (x86_64, 2 threads, torch 2.5.1)``


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
