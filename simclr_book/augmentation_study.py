"""Chapter 2's kit: the augmentation study's displays and evaluations.

What the chapter (book/02_augmentations.ipynb) needs beyond :mod:`simclr_lite.augment` and the book's
other kit modules, kept here so that the notebook shows the experiments, not their plumbing:

- the paper's numbers: Table 1 (:data:`PAPER_TABLE1`, :data:`TABLE1_STRENGTHS`);
- image grids of augmented views (Figs. 3 and 4, Appendix A's two views): :func:`image_grid`;
- the colour-histogram shortcut of Fig. 6: :func:`intensity_histograms`, :func:`histogram_matching`
  and its figure, :func:`plot_crop_histograms`;
- Fig. 5's composition grid and its decisive cells: :func:`plot_fig5_grid`, :func:`plot_short_vs_scale`;
- Table 1's figure: :func:`plot_table1`;
- the evaluation of an encoder on frozen h for the short grid (Sec. 2.3's linear evaluation):
  :func:`random_encoder`, :func:`linear_top1`. The decisive arms (Fig. 5 at scale, Table 1) are the specs'
  parts ``ch02-fig5`` and ``ch02-table1`` (:func:`simclr_book.fullscale.part_results`).

Book: chapter 2.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch

#: Table 1's colour distortion strengths: (column name, s, Gaussian blur).
TABLE1_STRENGTHS: tuple[tuple[str, float, bool], ...] = (
    ("1/8", 0.125, False), ("1/4", 0.25, False), ("1/2", 0.5, False), ("1", 1.0, False), ("1 (+blur)", 1.0, True))
#: Table 1 of the paper: ImageNet top-1 (%), ResNet-50, one value per :data:`TABLE1_STRENGTHS` column.
PAPER_TABLE1: dict[str, tuple[float, ...]] = {
    "SimCLR (linear eval.)": (59.6, 61.0, 62.6, 63.2, 64.5),
    "supervised": (77.0, 76.7, 76.5, 75.7, 75.4),
}
#: Table 1's last column: AutoAugment instead of crop + colour distortion.
PAPER_AUTOAUGMENT: dict[str, float] = {"SimCLR (linear eval.)": 61.1, "supervised": 77.1}


def paper_table1(strength: str) -> tuple[float, float]:
    """The paper's Table 1 at strength ``strength`` (a column name of :data:`TABLE1_STRENGTHS`):
    (SimCLR linear evaluation, supervised) top-1 in %.

    >>> paper_table1("1/8"), paper_table1("1")
    ((59.6, 77.0), (63.2, 75.7))
    """
    k = [name for name, _, _ in TABLE1_STRENGTHS].index(strength)
    return PAPER_TABLE1["SimCLR (linear eval.)"][k], PAPER_TABLE1["supervised"][k]


# ------------------------------------------------------------------------------------------ images
def as_image(t: torch.Tensor) -> np.ndarray:
    """A (3, H, W) image, uint8 or float in [0, 1], as an (H, W, 3) float array for ``imshow``.

    >>> as_image(torch.full((3, 2, 2), 255, dtype=torch.uint8)).shape, float(as_image(torch.ones(3, 2, 2)).max())
    ((2, 2, 3), 1.0)
    """
    t = t.float() / 255 if t.dtype == torch.uint8 else t.float()
    return t.permute(1, 2, 0).clamp(0, 1).numpy()


def image_grid(rows: Sequence[Sequence[torch.Tensor]], row_labels: Sequence[str], col_labels: Sequence[str],
               title: str, figsize: tuple[float, float], fontsize: float = 8) -> tuple[Any, np.ndarray]:
    """A grid of images without ticks: ``rows[r][c]`` in row ``r`` and column ``c``, each row named on the
    left and each column on top (Figs. 3 and 4's operators, Appendix A's two views). Returns
    ``(figure, axes)`` laid out, so the caller can draw on an image (e.g. crop boxes) before showing it."""
    import matplotlib.pyplot as plt
    if len(row_labels) != len(rows) or any(len(r) != len(col_labels) for r in rows):
        raise ValueError(f"image_grid: {len(rows)} rows of {[len(r) for r in rows]} images, "
                         f"{len(row_labels)} row and {len(col_labels)} column labels")
    fig, axes = plt.subplots(len(rows), len(col_labels), figsize=figsize, squeeze=False)
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            axes[r, c].imshow(as_image(img), interpolation="nearest")
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(row_labels[r], fontsize=fontsize)
    for c, label in enumerate(col_labels):
        axes[0, c].set_title(label, fontsize=fontsize)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig, axes


# ------------------------------------------------------------------------------ Fig. 6: histograms
def intensity_histograms(v: torch.Tensor, bins: int = 32) -> torch.Tensor:
    """Fig. 6: the fraction of each image's pixel values (all channels) in ``bins`` equal intensity bins
    over [0, 1]; ``v`` is a float batch (B, 3, H, W), the result (B, bins) with rows summing to 1.

    >>> intensity_histograms(torch.tensor([0.0, 0.1, 0.9, 1.0]).view(1, 1, 2, 2), bins=2).tolist()
    [[0.5, 0.5]]
    """
    return torch.stack([torch.histc(im, bins=bins, min=0.0, max=1.0) for im in v]) / v[0].numel()


def histogram_matching(x: torch.Tensor, strength: float, generator: torch.Generator
                       ) -> tuple[float, float, float]:
    """Fig. 6's shortcut as a number: two random crops of every image of ``x`` (float, (B, 3, H, W)),
    each followed by colour distortion of strength ``strength`` (none at 0), and each first crop matched
    to the second crop with the nearest intensity histogram (L1). Returns (top-1 of the matching: the
    fraction matched to their own image, mean L1 distance between crops of the same image, mean L1
    distance between crops of different images); chance is 1 / B."""
    from simclr_lite import augment as A
    from simclr_lite.augment_fig4 import OPERATORS
    views = []
    for _ in range(2):
        v = OPERATORS["crop"](x, generator=generator)
        views.append(A.color_distortion(v, strength, generator=generator) if strength else v)
    h1, h2 = (intensity_histograms(v) for v in views)
    d = torch.cdist(h1, h2, p=1)                                   # (B, B) L1 distances
    same, other = d.diag().mean().item(), d[~torch.eye(len(d), dtype=torch.bool)].mean().item()
    return (d.argmin(1) == torch.arange(len(d))).float().mean().item(), same, other


def plot_crop_histograms(images: Sequence[torch.Tensor], names: Sequence[str], generator: torch.Generator,
                         strength: float = 1.0, crops: int = 4) -> Any:
    """Fig. 6: intensity histograms (32 bins, % of the crop's pixel values) of ``crops`` random crops of
    each uint8 image of ``images`` (one row each, named by ``names``), without colour distortion (left)
    and after colour distortion of strength ``strength`` (right); the inset shows the first crop."""
    import matplotlib.pyplot as plt

    from simclr_lite import augment as A
    from simclr_lite.augment_fig4 import OPERATORS
    fig, axes = plt.subplots(len(images), 2, figsize=(9, 2.8 * len(images)), sharex=True, squeeze=False)
    centres = (torch.arange(32) + 0.5) * 256 / 32
    for r, (img, name) in enumerate(zip(images, names)):
        x = (img[None].float() / 255).repeat(crops, 1, 1, 1)          # random crops of the same image
        cropped = OPERATORS["crop"](x, generator=generator)
        for c, (v, label) in enumerate(((cropped, "without colour distortion"),
                                        (A.color_distortion(cropped, strength, generator=generator),
                                         f"with colour distortion (s = {strength:g})"))):
            ax = axes[r, c]
            hists = 100 * intensity_histograms(v)
            for k, h in enumerate(hists):
                ax.step(centres, h, where="mid", lw=1.4, label=f"crop {k + 1}")
            left, right = hists[:, :6].max().item(), hists[:, -6:].max().item()
            x0, side = (0.02, left) if left < right else (0.80, right)   # the inset goes over the lower quarter
            ax.set_ylim(0, min(100.0, max(1.08 * hists.max().item(), side / 0.58)))   # room for it above
            ax.set_title(f"{name}: {label}", fontsize=9)
            ax.set_ylabel("pixel values (%)")
            inset = ax.inset_axes([x0, 0.60, 0.18, 0.38])
            inset.imshow(as_image(v[0]), interpolation="nearest")
            inset.set_xticks([])
            inset.set_yticks([])
    for ax in axes[-1]:
        ax.set_xlabel("pixel intensity (0-255, all three channels)")
    fig.suptitle(f"Intensity histograms of {crops} random crops of {len(images)} images (Fig. 6)", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="lower center", ncol=crops, fontsize=9, frameon=False)
    return fig


# ---------------------------------------------------------------------------------- Fig. 5's grid
def fig5_cell_name(first: str, second: str) -> str:
    """A cell of Fig. 5 as the chapter names it: ``crop -> color``, or ``crop alone`` on the diagonal.

    >>> fig5_cell_name("crop", "color"), fig5_cell_name("crop", "crop")
    ('crop -> color', 'crop alone')
    """
    return f"{first} -> {second}" if first != second else f"{first} alone"


def plot_fig5_grid(grid: torch.Tensor, ops: Sequence[str], title: str) -> Any:
    """Fig. 5: linear-evaluation top-1 (``grid[i, j]``, a fraction) after pretraining with transformation
    ``ops[i]`` then ``ops[j]`` on one branch, as an annotated heat map (in %)."""
    import matplotlib.pyplot as plt
    if tuple(grid.shape) != (len(ops), len(ops)):
        raise ValueError(f"plot_fig5_grid: a {len(ops)} x {len(ops)} grid is needed, got {tuple(grid.shape)}")
    fig, ax = plt.subplots(figsize=(6.2, 5.0))
    im = ax.imshow(100 * grid.numpy(), cmap="viridis")
    for i in range(len(ops)):
        for j in range(len(ops)):
            v = 100 * grid[i, j].item()
            ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=9,
                    color="black" if v > 100 * grid.mean().item() else "white")
    ax.set_xticks(range(len(ops)), ops)
    ax.set_yticks(range(len(ops)), ops)
    ax.set_xlabel("2nd transformation")
    ax.set_ylabel("1st transformation")
    fig.colorbar(im, ax=ax, label="linear-evaluation top-1 (%)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_short_vs_scale(short: Mapping[str, float], scale: Mapping[str, float], random_short: float,
                        random_scale: float, short_label: str, scale_label: str) -> Any:
    """Fig. 5's decisive cells in two settings, as grouped bars: linear top-1 (fractions) of each cell
    (the keys of ``short``, in order) in short runs and at scale, with each setting's random encoder."""
    import matplotlib.pyplot as plt
    names = list(short)
    xs = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    ax.bar(xs - 0.2, [100 * short[n] for n in names], 0.4, label=short_label, color="tab:gray")
    ax.bar(xs + 0.2, [100 * scale[n] for n in names], 0.4, label=scale_label, color="tab:blue")
    ax.axhline(100 * random_short, color="tab:gray", lw=1, ls=":", label="random encoder (short runs)")
    ax.axhline(100 * random_scale, color="tab:blue", lw=1, ls=":", label="random encoder (at scale)")
    ax.set_xticks(list(xs), names)
    ax.set_ylabel("linear-evaluation top-1 (%)")
    ax.set_title("Fig. 5's decisive cells: short runs against runs at scale", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)  # below the bars
    fig.tight_layout()
    return fig


# -------------------------------------------------------------------------------------- Table 1
def plot_table1(ours: Mapping[str, Mapping[str, float]], random_linear: float, title: str) -> Any:
    """Table 1 as two panels against colour strength: ours (left; ``ours[curve][strength]``, fractions, for
    the curves ``SimCLR, linear evaluation``, ``SimCLR, kNN (k = 200)``, ``supervised from scratch`` at the
    strengths run, named as in :data:`TABLE1_STRENGTHS`, with the random encoder) and the paper's
    (right, :data:`PAPER_TABLE1`)."""
    import matplotlib.pyplot as plt
    labels = [n for n, _, _ in TABLE1_STRENGTHS]
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(9, 4.0))
    for (curve, vals), style in zip(ours.items(), ("o-", "o--", "s-")):
        ax0.plot([labels.index(s) for s in vals], [100 * v for v in vals.values()], style, label=curve)
    ax0.axhline(100 * random_linear, color="gray", lw=1, ls=":", label="random encoder, linear")
    ax0.set_title(title, fontsize=9)
    ax1.plot(range(len(labels)), PAPER_TABLE1["SimCLR (linear eval.)"], "o-", label="SimCLR, linear evaluation")
    ax1.plot(range(len(labels)), PAPER_TABLE1["supervised"], "s-", color="tab:green", label="supervised")
    ax1.set_title("Paper, Table 1: ImageNet, ResNet-50", fontsize=9)
    for ax in (ax0, ax1):
        ax.set_xticks(range(len(labels)), labels)
        ax.set_xlabel("colour distortion strength s")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.legend(fontsize=8)
    fig.suptitle("Colour distortion strength for SimCLR and for supervised training (Table 1)", fontsize=10)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------- evaluation
def random_encoder(cfg: Any, device: str, seed: int = 0) -> torch.nn.Module:
    """The encoder f of ``cfg``'s network, randomly initialised as ``pretrain`` starts it (seeded by
    ``seed``), on ``device``: the random-encoder floor, and the start of a supervised run (Table 1)."""
    from simclr_lite.config import build_model
    torch.manual_seed(seed)
    return build_model(cfg).encoder.to(device)


def linear_top1(encoder: torch.nn.Module, data: Sequence[torch.Tensor], epochs: int, device: str,
                seed: int = 0) -> float:
    """Linear evaluation (Sec. 2.3): a logistic regression on the frozen h of ``data``'s training images
    (``(xtr, ytr, xte, yte)``), its top-1 on the test images (a fraction)."""
    from simclr_lite.evaluate import extract_features, linear_eval
    xtr, ytr, xte, yte = data
    f_tr, f_te = (extract_features(encoder, x, device=device) for x in (xtr, xte))
    return linear_eval(f_tr, ytr, f_te, yte, epochs=epochs, seed=seed, device=device)["top1"]
