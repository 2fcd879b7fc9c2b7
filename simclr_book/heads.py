"""Chapter 4's helpers: h and z = g(h) of a trained network, Table 3's transformation probes, the effective
rank of a spectrum (Appendix B.4), and the verdicts of the two findings that have no full-scale part.

Table 3 of the paper trains an MLP to predict which transformation was applied to an image, once from
h and once from g(h): colour against grayscale, the four rotations, original against Gaussian noise
and original against Sobel edges. :func:`table3` runs it on held-out images: every image appears in
every version of a task, the first half of the images trains the probe and the other half tests it.
:func:`table3_views` is the paper's condition for the last three rows: the transformation is added to
pretraining, drawn independently for each view.

Findings 6 (Table 3) and 8 (the linear head's low rank) are decided at the chapter's budget by the one
rule (:mod:`simclr_book.verdict`): Table 3 on the probe's held-out predictions, the low rank over seeds
(:func:`exact_compare`); and a model whose class accuracy is at or below the floors cannot decide
(:func:`held_to_floor`).

Book: chapter 4.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any, Callable, Sequence

import numpy as np
import torch

from simclr_book.verdict import FLOOR, MIN_SEEDS, SEEDS, Verdict, compare

TABLE3_TASKS = ("colour vs grayscale", "rotation 0/90/180/270", "original vs corrupted", "original vs Sobel")
#: The tasks whose transformation the paper adds to pretraining (Table 3's caption), with their arms' short names.
TABLE3_ADDED = {"rotation 0/90/180/270": "rotate", "original vs corrupted": "noise", "original vs Sobel": "sobel"}
PROBE_HIDDEN, PROBE_MAX_ITER = 256, 500     # the probe: one hidden layer (scikit-learn), early stopping
EXACT_N = 10 ** 12   # "test images" of a quantity computed exactly from the weights: its test-set bar vanishes


def h_and_z(model: torch.nn.Module, images: torch.Tensor, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """h = f(x) and z = g(h) of ``images`` on ``device`` (eval mode: batch-norm running statistics), returned
    on the CPU; the model stays where it is (a cached model: on the CPU)."""
    from simclr_lite.evaluate import extract_features
    h = extract_features(model.encoder, images, device=device)
    head = copy.deepcopy(model.head).eval().to(device)
    with torch.no_grad():
        z = torch.cat([head(h[i:i + 4096].to(device)).float().cpu() for i in range(0, len(h), 4096)])
    return h, z


def effective_rank(sq: torch.Tensor) -> float:
    """exp(entropy) of a spectrum ``sq`` (e.g. squared singular values) normalised to sum 1: its dimension for
    a flat spectrum, 1 for a rank-one matrix (Appendix B.4's low-rank head, summarised in one number).

    >>> round(effective_rank(torch.ones(128)), 6), effective_rank(torch.tensor([1.0, 0, 0]))
    (128.0, 1.0)
    """
    p = sq.double() / sq.sum()
    return float(torch.exp(-(p * torch.log(p.clamp_min(1e-30))).sum()))


def transformed_versions(x: torch.Tensor, generator: torch.Generator) -> dict[str, list[torch.Tensor]]:
    """The versions of each image (float, in [0, 1]) for each task of Table 3, in :data:`TABLE3_TASKS` order:
    original and grayscale; the four rotations; original and Gaussian noise (sigma ~ U(0.05, 0.15));
    original and Sobel edges."""
    from simclr_lite.augment_fig4 import color_drop, gaussian_noise, sobel
    return {
        "colour vs grayscale": [x, color_drop(x)],
        "rotation 0/90/180/270": [torch.rot90(x, k, dims=(2, 3)) for k in range(4)],
        "original vs corrupted": [x, gaussian_noise(x, std=(0.05, 0.15), generator=generator)],
        "original vs Sobel": [x, sobel(x)],
    }


def probe(features: np.ndarray, n_images: int, seed: int = 0) -> dict[str, Any]:
    """Accuracy of an MLP that predicts the version index from ``features`` (versions stacked, each of
    ``n_images`` images): the first half of the images trains it (10% of them held out for early stopping),
    the other half tests it. Returns ``top1``, ``n`` (held-out predictions) and ``capped`` (True when it
    stopped at :data:`PROBE_MAX_ITER` iterations without converging: scikit-learn then warns).

    The features are standardised; early stopping ends the fit when the held-out tenth stops improving, so
    the probe does not chase a training loss it could drive towards zero (the cause of the warnings a plain
    fit of 300 iterations gave)."""
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    n_versions = len(features) // n_images
    labels = np.repeat(np.arange(n_versions), n_images)
    train = np.tile(np.arange(n_images), n_versions) < n_images // 2
    clf = make_pipeline(StandardScaler(), MLPClassifier((PROBE_HIDDEN,), max_iter=PROBE_MAX_ITER, early_stopping=True,
                                                        random_state=seed))
    clf.fit(features[train], labels[train])
    return dict(top1=float(clf.score(features[~train], labels[~train])), n=int((~train).sum()),
                capped=clf[-1].n_iter_ >= PROBE_MAX_ITER)


def table3(model: torch.nn.Module, x: torch.Tensor, device: str,
           tasks: Sequence[str] = TABLE3_TASKS) -> dict[str, dict[str, Any]]:
    """Table 3 for one model on images ``x`` (float, [0, 1]): task -> ``chance``, ``h`` and ``gh`` (the probe's
    accuracy from h and from g(h)), ``n`` (its held-out predictions) and ``capped`` (probes that hit the
    iteration cap, of 2)."""
    out = {}
    for task, versions in transformed_versions(x, torch.Generator().manual_seed(0)).items():
        if task in tasks:
            h, z = h_and_z(model, torch.cat(versions), device)
            ph, pz = probe(h.numpy(), len(x)), probe(z.numpy(), len(x))
            out[task] = dict(chance=1 / len(versions), h=ph["top1"], gh=pz["top1"], n=ph["n"],
                             capped=int(ph["capped"]) + int(pz["capped"]))
    return out


def table3_views(task: str, cfg: Any) -> tuple[Callable[..., torch.Tensor], str]:
    """Table 3's pretraining views for ``task`` (one of the last three): the recipe's view of ``cfg`` (crop,
    flip, colour distortion) followed by the task's transformation, drawn independently for each image of
    each view (the caption of Table 3): a rotation by 0/90/180/270 degrees with equal probability, Gaussian
    noise with probability 1/2, Sobel edges with probability 1/2. Returns ``(view, key)`` for
    :func:`simclr_book.cache.cached_pretrain`'s ``augment`` and ``augment_key``."""
    from simclr_lite.augment import SimCLRAugment, coin, per_image
    from simclr_lite.augment_fig4 import gaussian_noise, rotate, sobel

    from simclr_book.cache import code_fingerprint
    op, p = {   # rotate() turns by 90, 180 or 270 degrees: applied with p = 3/4, each of the four angles has 1/4
        "rotation 0/90/180/270": (lambda x, g: rotate(x, generator=g), 0.75),
        "original vs corrupted": (lambda x, g: gaussian_noise(x, std=(0.05, 0.15), generator=g), 0.5),
        "original vs Sobel": (lambda x, g: sobel(x), 0.5),
    }[task]
    recipe = SimCLRAugment(cfg.image_size, strength=cfg.strength, blur=cfg.blur, scale=(cfg.min_scale, 1.0))

    def view(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = recipe(images, generator=generator)
        return torch.where(per_image(coin(p, len(x), x.device, generator)), op(x, generator), x)
    return view, f"table3:{task}:p={p}:{code_fingerprint(('augment', 'augment_fig4'))[:12]}"


def table3_run(task: str, cfg: Any, budget_name: str, data: tuple[torch.Tensor, ...]) -> dict[str, Any]:
    """Table 3's arm for ``task``: ``cfg`` (Fig. 7's arm ``w``, the recipe for the arms' epochs) pretrained
    with the task's transformation added to its views (:func:`table3_views`), trained once into the run cache
    (:func:`simclr_book.cache.cached_pretrain`) and loaded after. Module-level, so that
    :func:`simclr_book.fullscale.side_by_side` can train the three arms at once."""
    from simclr_book.cache import cached_pretrain
    view, key = table3_views(task, cfg)
    return cached_pretrain(cfg, data, name=f"{budget_name}-ch04-table3-{TABLE3_ADDED[task]}", augment=view,
                           augment_key=key)


def held_to_floor(v: Verdict, accuracy: float, floor: float) -> Verdict:
    """``v`` held to the floors through the model behind it: "below the floor" when that model's class
    accuracy ``accuracy`` (a fraction, the floors' protocol) is at or below ``floor`` (the higher of raw
    pixels and the random encoder). For rows whose numbers are not class accuracies (Table 3's probes, a
    spectrum), which :func:`simclr_book.verdict.compare` cannot hold to a floor itself.

    >>> v = compare("r", [0.9], [0.5], n=1000)
    >>> held_to_floor(v, 0.42, 0.44).status, held_to_floor(v, 0.50, 0.44).status
    ('below the floor', "paper's direction")
    """
    if accuracy > floor:
        return v
    return dataclasses.replace(v, status=FLOOR, floor=floor,
                               note=f"the model's class accuracy {100 * accuracy:.1f}% is at or below the floor "
                                    f"({100 * floor:.1f}%)")


def exact_compare(label: str, a: Sequence[float], b: Sequence[float], sign: int = +1, **names: Any) -> Verdict:
    """The one rule for a quantity computed exactly from each seed's weights, with no test images to sample
    (e.g. a spectrum's effective rank as a fraction of its dimension): the test-set part of the bar vanishes
    (``n`` = :data:`EXACT_N`), so the bar is twice the seed SE and a verdict needs
    :data:`~simclr_book.verdict.MIN_SEEDS` seeds (with fewer: "needs 3 seeds"). ``a`` and ``b`` are fractions
    paired by seed.

    >>> exact_compare("rank", [0.35, 0.33, 0.36], [0.61, 0.60, 0.62], sign=-1).status
    "paper's direction"
    >>> exact_compare("rank", [0.35], [0.61], sign=-1).status
    'needs 3 seeds'
    """
    v = compare(label, a, b, n=EXACT_N, sign=sign, **names)
    if v.seeds < MIN_SEEDS and v.status != FLOOR:
        return dataclasses.replace(v, status=SEEDS, note=f"{v.seeds} seed(s): a quantity without test-set noise "
                                                         f"needs {MIN_SEEDS} seeds")
    return v
