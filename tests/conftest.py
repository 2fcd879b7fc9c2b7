"""Shared fixtures: tiny ImageFolder trees written by the tests themselves."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def real_cifar_root() -> Path | None:
    """The CIFAR-10 copy (``$SIMCLR_DATA`` or ``../shared/datasets``), if present."""
    for cand in (os.environ.get("SIMCLR_DATA"), str(SHARED)):
        if cand and (Path(cand) / "cifar10" / "test.tar.gz").exists():
            return Path(cand)
    return None


def write_image(path: Path, rgb: np.ndarray, mode: str = "RGB", fmt: str | None = None) -> None:
    from PIL import Image

    im = Image.fromarray(rgb.astype(np.uint8), "RGB")
    if mode != "RGB":
        im = im.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format=fmt)


def class_image(cls: int, i: int, size: int = 16, rng: np.random.Generator | None = None) -> np.ndarray:
    """An image whose colour and stripe direction depend on its class (so kNN can learn it)."""
    rng = rng or np.random.default_rng(cls * 1000 + i)
    base = np.zeros((size, size, 3), np.float32)
    base[..., cls % 3] = 180
    yy, xx = np.mgrid[0:size, 0:size]
    stripes = ((xx if cls % 2 else yy) // 2) % 2
    img = base + 60 * stripes[..., None] + rng.normal(0, 20, (size, size, 3))
    return np.clip(img, 0, 255)


def make_tree(root: Path, classes: int = 3, per_class: int = 24, size: int = 16,
              splits: tuple[str, ...] = ("train", "test")) -> Path:
    for split in splits:
        for c in range(classes):
            for i in range(per_class if split == "train" else max(4, per_class // 3)):
                write_image(root / split / f"class{c}" / f"{i:03d}.png", class_image(c, i + (0 if split == "train" else 500), size))
    return root


# One image of each mode in turn: RGB JPEG, grayscale PNG, RGBA PNG, CMYK JPEG.
MIXED_KINDS = (("RGB", "JPEG", "jpg"), ("L", "PNG", "png"), ("RGBA", "PNG", "png"), ("CMYK", "JPEG", "jpeg"))


def mixed_mode_tree(root: Path, train_per_class: int, test_per_class: int, test_split: str = "val",
                    sizes: tuple[int, int] = (20, 60), seed: int = 0) -> Path:
    """An ImageNet-like tree of 2 classes (``n00``, ``n01``): ``train/`` and ``test_split/`` (ImageNet's
    ``val/`` by default), images ``<i>.<ext>`` of random sizes in ``sizes`` and the modes of
    :data:`MIXED_KINDS` in turn, each coloured by its class so that a kNN can tell them apart."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", train_per_class), (test_split, test_per_class)):
        for c in range(2):
            for i in range(n):
                mode, fmt, ext = MIXED_KINDS[i % len(MIXED_KINDS)]
                img = rng.normal(0, 30, (int(rng.integers(*sizes)), int(rng.integers(*sizes)), 3))
                img[..., 2 * c] += 200
                write_image(root / split / f"n0{c}" / f"{i}.{ext}", np.clip(img, 0, 255), mode, fmt)
    return root


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session caches decoded arrays in its own folder, never in data/."""
    monkeypatch.setenv("SIMCLR_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def tiny_tree(tmp_path) -> Path:
    return make_tree(tmp_path / "tiny")


def slow_loss(seconds: float) -> None:
    """Make every NT-Xent call of this process sleep ``seconds`` first (a run slow enough to be caught
    mid-way by a signal or a second process)."""
    import functools
    import time

    from simclr_lite.losses import LOSSES
    real = LOSSES["nt_xent"]

    @functools.wraps(real)
    def slow(*a, **k):
        time.sleep(seconds)
        return real(*a, **k)
    LOSSES["nt_xent"] = slow
