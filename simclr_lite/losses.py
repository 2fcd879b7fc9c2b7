"""Contrastive losses: NT-Xent (eq. 1, Algorithm 1) and the alternatives of Table 2.

Notation (Sec. 2.1): a batch of N examples gives 2N views. Row ``i`` of ``z_a``
and row ``i`` of ``z_b`` (both ``(N, d)``, the projection-head outputs) are a
positive pair; the other 2(N-1) views are the negatives of each anchor.
``s(u, v) = u^T v / (||u|| ||v||)`` is cosine similarity and ``tau`` the temperature.

- :func:`nt_xent`: the loss SimCLR trains with, one ``(2N x 2N)`` matmul and
  one ``F.cross_entropy``; also takes a gathered global batch for multi-GPU runs.
- :func:`nt_xent_naive`: Algorithm 1 written as Python loops, the reference.
- :func:`nt_logistic`, :func:`margin_triplet`: Table 2's other two losses,
  optionally with Table 4's semi-hard negative mining.
- :func:`gradient_wrt_anchor`: Table 2's closed-form gradients.
- :func:`contrastive_stats`: Table 5's contrastive accuracy and entropy.

Book: chapter 3, ``book/03_nt_xent.ipynb``.
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import ConfigError

__all__ = ["nt_xent", "nt_xent_naive", "nt_logistic", "margin_triplet",
           "gradient_wrt_anchor", "contrastive_stats", "check_temperature", "LOSSES"]


# --------------------------------------------------------------------------- checks
def check_temperature(temperature: float) -> None:
    """The one rule for tau, used by every loss here and by ``Config.validate``: finite and > 0."""
    if not (temperature > 0 and math.isfinite(temperature)):  # also rejects NaN and inf
        raise ConfigError(f"temperature must be > 0 and finite, got {float(temperature)}; "
                          "the paper uses 0.1-1.0 (--temperature 0.5 for CIFAR-10)")


def _check_pairs(z_a: Tensor, z_b: Tensor, n_total: int | None = None) -> None:
    """Both views are ``(N, d)`` with the same shape and at least 2 pairs overall."""
    if z_a.dim() != 2 or z_a.shape != z_b.shape:
        raise ConfigError(f"z_a and z_b must both have shape (N, d), got {tuple(z_a.shape)} "
                          f"and {tuple(z_b.shape)}; row i of each is the i-th positive pair")
    n = z_a.shape[0] if n_total is None else n_total
    if n < 2:
        raise ConfigError(f"NT-Xent needs at least 2 pairs per batch (negatives come from the "
                          f"other pairs), got N={n}; use --batch-size 2 or more")


def _check_batch(z_a: Tensor, z_b: Tensor, z_a_all: Tensor | None, z_b_all: Tensor | None, offset: int) -> None:
    """The local pairs and, under torchrun, the gathered global batch holding them at ``offset``."""
    if (z_a_all is None) != (z_b_all is None):
        raise ConfigError("pass both z_a_all and z_b_all (the gathered global batch) or neither")
    if z_a_all is None:
        _check_pairs(z_a, z_b)
        return
    _check_pairs(z_a_all, z_b_all)
    _check_pairs(z_a, z_b, n_total=z_a_all.shape[0])
    if z_a.shape[1] != z_a_all.shape[1]:
        raise ConfigError(f"local and gathered embeddings differ in width: "
                          f"{z_a.shape[1]} vs {z_a_all.shape[1]}")
    if not 0 <= offset <= z_a_all.shape[0] - z_a.shape[0]:
        raise ConfigError(f"offset must place the {z_a.shape[0]} local rows inside the "
                          f"{z_a_all.shape[0]} gathered rows, got offset={offset}")


# ----------------------------------------------------------------- similarity logits
def _compute_dtype(z: Tensor) -> torch.dtype:
    """float32 for half inputs, float64 stays float64."""
    return torch.promote_types(z.dtype, torch.float32)


def _autocast_off(device: torch.device) -> contextlib.AbstractContextManager:
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def _views(z_a: Tensor, z_b: Tensor, normalize: bool) -> Tensor:
    """The 2N views ``[z_a; z_b]`` in float32 (or float64), l2-normalised if asked."""
    z = torch.cat([z_a, z_b]).to(_compute_dtype(z_a))
    return F.normalize(z, dim=1) if normalize else z


def _similarity(z_a: Tensor, z_b: Tensor, normalize: bool,
                z_a_all: Tensor | None = None, z_b_all: Tensor | None = None, scale: float = 1.0) -> Tensor:
    """``(2N, 2N_global)`` similarities of the local views with all views, times ``scale``.

    Precision: the inputs are cast to float32 *before* normalising and the matmul
    runs with autocast disabled. The matmul costs ``4 N^2 d`` FLOPs, negligible
    next to the encoder, while a bfloat16 similarity (8-bit mantissa, error ~4e-3)
    divided by tau = 0.1 would shift the logits by ~0.04. ``scale`` (1/tau for
    logits) multiplies the ``(2N, d)`` anchors, not the ``(2N, 2N)`` product:
    one small multiply instead of a large division (benchmarks/bench_loss.py).
    """
    anchors = _views(z_a, z_b, normalize)
    cands = anchors if z_a_all is None else _views(z_a_all, z_b_all, normalize)
    with _autocast_off(anchors.device):
        return (anchors * scale if scale != 1.0 else anchors) @ cands.T


def _columns(z_a: Tensor, z_a_all: Tensor | None, offset: int,
             device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Rows of the 2N local anchors, and the columns of each one's positive and of itself among
    the ``2 N_all`` candidates (view a at ``[0, N_all)``, view b after; ``N_all = N`` alone)."""
    n = z_a.shape[0]
    n_all = n if z_a_all is None else z_a_all.shape[0]
    local = torch.arange(n, device=device) + offset
    self_cols = torch.cat([local, local + n_all])
    pos_cols = torch.cat([local + n_all, local])      # (i + N) mod 2N for a single batch
    return torch.arange(2 * n, device=device), pos_cols, self_cols


def _logits(z_a: Tensor, z_b: Tensor, temperature: float, normalize: bool,
            z_a_all: Tensor | None = None, z_b_all: Tensor | None = None,
            offset: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Masked logits ``s / tau`` (self-similarity set to the dtype's minimum),
    the column of each anchor's positive, and the column of each anchor itself."""
    logits = _similarity(z_a, z_b, normalize, z_a_all, z_b_all, scale=1.0 / temperature)
    rows, pos_cols, self_cols = _columns(z_a, z_a_all, offset, logits.device)
    # finfo.min rather than -inf: exp() still gives 0, but 0 * logit stays finite.
    fill = torch.tensor(torch.finfo(logits.dtype).min, dtype=logits.dtype, device=logits.device)
    logits.index_put_((rows, self_cols), fill)  # in place: the matmul's backward needs only its inputs
    return logits, pos_cols, self_cols


# ------------------------------------------------------------------------- NT-Xent
def nt_xent(z_a: Tensor, z_b: Tensor, temperature: float = 0.5, normalize: bool = True, *,
            z_a_all: Tensor | None = None, z_b_all: Tensor | None = None,
            offset: int = 0, group: int = 0) -> Tensor:
    """NT-Xent, the normalized temperature-scaled cross entropy of eq. 1.

    For an anchor i with positive j, ``l(i, j) = -log exp(s_ij/tau) / sum_{k != i} exp(s_ik/tau)``,
    and the loss is the mean of ``l`` over all 2N anchors, each view of each
    pair serving once as anchor (Algorithm 1). ``normalize=False`` uses plain dot
    products (Table 5's "without l2 norm" rows).

    Implementation: one ``(2N x 2N)`` matmul of the concatenated views, the
    diagonal filled with ``finfo.min`` and ``F.cross_entropy`` with targets
    ``(i + N) mod 2N``. Half-precision inputs (and calls under autocast) are
    cast to float32 before normalising and the matmul runs in float32 (see
    :func:`_similarity`); the loss is float32, gradients return in the input dtype.

    Distributed form: pass the gathered global batch ``z_a_all``, ``z_b_all``
    (``(N_global, d)``, holding the local rows at ``[offset, offset + N)``). The 2N
    local anchors are then contrasted with all ``2 N_global`` views and the mean
    is over the local anchors, so the mean over equal-sized shards equals the
    global loss. Gradients reach the negatives only if the gather is
    differentiable (see :mod:`simclr_lite.distributed`).

    Example: N = 4 pairs whose two views are the same one-hot vector, orthogonal to
    the other pairs. Each anchor then has s = 1 with its positive and s = 0 with its
    2N - 2 = 6 negatives, so every ``l(i, j)`` is ``log(1 + 6 exp(-1/tau))``:

    >>> import math, torch
    >>> from simclr_lite.losses import nt_xent
    >>> z = torch.eye(4)                       # (N, d) = (4, 4)
    >>> loss = nt_xent(z, z, temperature=0.5)
    >>> loss.shape, loss.dtype                 # a scalar, the mean over the 2N anchors
    (torch.Size([]), torch.float32)
    >>> round(loss.item(), 4), round(math.log(1 + 6 * math.exp(-1 / 0.5)), 4)
    (0.5944, 0.5944)

    Random projections: the loss is symmetric in the two views, and views that
    agree (a small perturbation of ``z_a``) give a lower loss than unrelated ones:

    >>> _ = torch.manual_seed(0)
    >>> z_a, z_b = torch.randn(8, 16), torch.randn(8, 16)
    >>> torch.allclose(nt_xent(z_a, z_b), nt_xent(z_b, z_a))
    True
    >>> bool(nt_xent(z_a, z_a + 0.1 * torch.randn(8, 16)) < nt_xent(z_a, z_b))
    True

    Fewer negatives, all else equal: ``group=g`` (a divisor of N) splits the batch into
    consecutive sub-batches of g pairs and contrasts each anchor only with the 2g - 2
    views of its own sub-batch; the loss is the mean over all 2N anchors as before
    (so ``group=N`` is the plain loss). It isolates what Fig. 9 attributes to batch
    size, the number of negatives, from the number of images and steps:

    >>> z = torch.nn.functional.normalize(torch.randn(8, 16), dim=1)
    >>> halves = (nt_xent(z[:4], z[:4] + 0.1) + nt_xent(z[4:], z[4:] + 0.1)) / 2
    >>> torch.allclose(nt_xent(z, z + 0.1, group=4), halves)
    True

    Book: chapter 3, ``book/03_nt_xent.ipynb``; ``group``: chapter 5 (Fig. 9's control).
    """
    check_temperature(temperature)
    _check_batch(z_a, z_b, z_a_all, z_b_all, offset)
    if group:
        return _nt_xent_grouped(z_a, z_b, temperature, normalize, group, z_a_all is not None)
    logits, pos_cols, _ = _logits(z_a, z_b, temperature, normalize, z_a_all, z_b_all, offset)
    return F.cross_entropy(logits, pos_cols)


def _nt_xent_grouped(z_a: Tensor, z_b: Tensor, temperature: float, normalize: bool, group: int,
                     gathered: bool) -> Tensor:
    """:func:`nt_xent` within each sub-batch of ``group`` consecutive pairs: one batched
    ``(N/g, 2g, 2g)`` matmul, the diagonals masked, targets ``(i + g) mod 2g``."""
    n, d = z_a.shape
    if gathered:
        raise ConfigError("--neg-group restricts negatives within one process's batch; run it on one "
                          "process (no torchrun) or set --neg-group 0")
    if group < 2 or n % group:
        raise ConfigError(f"--neg-group must be at least 2 and divide the batch of {n} pairs, got {group}; "
                          f"use a divisor of the batch size, or 0 for the whole batch")
    v = torch.cat([z_a.reshape(n // group, group, d), z_b.reshape(n // group, group, d)], dim=1)
    v = v.to(_compute_dtype(z_a))
    v = F.normalize(v, dim=2) if normalize else v
    with _autocast_off(v.device):
        logits = (v * (1.0 / temperature)) @ v.transpose(1, 2)
    eye = torch.eye(2 * group, dtype=torch.bool, device=v.device)
    logits = logits.masked_fill(eye, torch.finfo(logits.dtype).min)
    target = (torch.arange(2 * group, device=v.device) + group) % (2 * group)
    return F.cross_entropy(logits.reshape(-1, 2 * group), target.repeat(n // group))


def nt_xent_naive(z_a: Tensor, z_b: Tensor, temperature: float = 0.5,
                  normalize: bool = True) -> Tensor:
    """Algorithm 1, line by line: the teaching reference for :func:`nt_xent`.

    The views are interleaved as in the paper (``z_{2k-1}``, ``z_{2k}`` are the two
    views of example k; 0-based here), every sum is an explicit Python loop and no
    log-sum-exp trick is used, so large ``|s| / tau`` overflows. Slow: O(N^2)
    Python-level operations; use it on small batches only.

    Book: chapter 3, ``book/03_nt_xent.ipynb``.
    """
    check_temperature(temperature)
    _check_pairs(z_a, z_b)
    n = z_a.shape[0]
    z = [view for k in range(n) for view in (z_a[k], z_b[k])]
    if normalize:  # s_ij = z_i^T z_j / (||z_i|| ||z_j||)
        z = [v / torch.linalg.vector_norm(v) for v in z]

    def s(i: int, j: int) -> Tensor:
        return torch.dot(z[i], z[j])

    def l(i: int, j: int) -> Tensor:
        denominator = sum(torch.exp(s(i, k) / temperature) for k in range(2 * n) if k != i)
        return -torch.log(torch.exp(s(i, j) / temperature) / denominator)

    total = sum(l(2 * k, 2 * k + 1) + l(2 * k + 1, 2 * k) for k in range(n))
    return total / (2 * n)


# ------------------------------------------------------ Table 2: the other losses
def _pos_neg(z_a: Tensor, z_b: Tensor, semi_hard: bool, normalize: bool = True,
             z_a_all: Tensor | None = None, z_b_all: Tensor | None = None,
             offset: int = 0) -> tuple[Tensor, Tensor]:
    """Positive similarities ``(2N, 1)`` and negative similarities ``(2N, K)`` of the
    (l2-normalised) local views; K = 2 N_all - 2, or K = 1 with semi-hard mining.

    With the gathered global batch (``z_a_all``, ``z_b_all``, local rows at
    ``offset``) each local anchor meets the negatives of the whole batch, in the
    same order as in one process, so the mean over equal shards is the global loss.
    """
    _check_batch(z_a, z_b, z_a_all, z_b_all, offset)
    sim = _similarity(z_a, z_b, normalize, z_a_all, z_b_all)
    rows, pos_cols, self_cols = _columns(z_a, z_a_all, offset, sim.device)
    s_pos = sim[rows, pos_cols].unsqueeze(1)
    neg_mask = torch.ones_like(sim, dtype=torch.bool)
    neg_mask[rows, self_cols] = False
    neg_mask[rows, pos_cols] = False
    s_neg = sim[neg_mask].view(len(rows), sim.shape[1] - 2)
    if semi_hard:
        s_neg = s_neg.gather(1, _semi_hard_index(s_pos.detach(), s_neg.detach()))
    return s_pos, s_neg


def _semi_hard_index(s_pos: Tensor, s_neg: Tensor) -> Tensor:
    """Column of the one semi-hard negative per anchor, ``(2N, 1)``.

    Semi-hard (FaceNet, Schroff et al. 2015; Sec. 5.1 of the paper: "within the
    loss margin and closest in distance, but farther than positive examples"):
    the most similar negative that is still *less* similar than the positive,
    ``u^T v- < u^T v+``. If every negative is more similar than the positive, the
    least similar negative is taken (the rule of TensorFlow's
    ``triplet_semihard_loss``). The margin is not part of the rule: a mined
    negative outside the margin simply gives a zero hinge in :func:`margin_triplet`.
    """
    below = s_neg < s_pos
    lowest = torch.finfo(s_neg.dtype).min
    closest_below = s_neg.masked_fill(~below, lowest).argmax(1, keepdim=True)
    least_similar = s_neg.argmin(1, keepdim=True)
    return torch.where(below.any(1, keepdim=True), closest_below, least_similar)


def nt_logistic(z_a: Tensor, z_b: Tensor, temperature: float = 0.5,
                semi_hard: bool = False, normalize: bool = True, *, z_a_all: Tensor | None = None,
                z_b_all: Tensor | None = None, offset: int = 0) -> Tensor:
    """NT-Logistic (Table 2): ``-log sigma(u^T v+ / tau) - log sigma(-u^T v- / tau)``.

    One term per triplet (anchor u, its positive v+, one negative v-), on
    l2-normalised vectors, averaged over all triplets: every one of the 2N
    anchors with each of its 2N - 2 negatives. Per anchor the positive term thus
    weighs 1 and each negative ``1 / (2N - 2)``, i.e. positives and negatives
    weigh the same in total. ``semi_hard=True`` keeps one negative per anchor
    (Table 4's "sh", see :func:`_semi_hard_index`). ``normalize=False`` uses plain
    dot products, as :func:`nt_xent` does; ``z_a_all``, ``z_b_all``, ``offset``: the
    gathered global batch, as in :func:`nt_xent`.

    Book: chapter 3, ``book/03_nt_xent.ipynb``.
    """
    check_temperature(temperature)
    s_pos, s_neg = _pos_neg(z_a, z_b, semi_hard, normalize, z_a_all, z_b_all, offset)
    # -log sigma(x) = softplus(-x); the positive term is the same for all K triplets
    return (F.softplus(-s_pos / temperature) + F.softplus(s_neg / temperature)).mean()


def margin_triplet(z_a: Tensor, z_b: Tensor, margin: float = 1.0,
                   semi_hard: bool = False, *, z_a_all: Tensor | None = None,
                   z_b_all: Tensor | None = None, offset: int = 0) -> Tensor:
    """Margin triplet (Table 2): ``max(u^T v- - u^T v+ + m, 0)``.

    On l2-normalised vectors (similarities in [-1, 1], so useful margins lie in
    (0, 2]), averaged over all triplets as in :func:`nt_logistic`. ``semi_hard=True``
    keeps one negative per anchor (Table 4's "sh", see :func:`_semi_hard_index`).
    Always on normalised vectors (the margin is in cosine units); ``z_a_all``,
    ``z_b_all``, ``offset``: the gathered global batch, as in :func:`nt_xent`.

    Book: chapter 3, ``book/03_nt_xent.ipynb``.
    """
    if not margin >= 0:
        raise ConfigError(f"margin must be >= 0, got {float(margin)}; cosine similarities "
                          "lie in [-1, 1], so try 0.1-1.0")
    s_pos, s_neg = _pos_neg(z_a, z_b, semi_hard, True, z_a_all, z_b_all, offset)
    return F.relu(s_neg - s_pos + margin).mean()


def gradient_wrt_anchor(loss: str, u: Tensor, v_pos: Tensor, v_negs: Tensor,
                        temperature: float = 0.5, margin: float = 1.0) -> Tensor:
    """Table 2's closed-form gradient of the *negative* loss w.r.t. the anchor u.

    Table 2 lists the negative loss (the objective one ascends) and its gradient,
    so the result is ``-d loss / d u``: stepping u along it lowers the loss.
    ``u``, ``v_pos`` are ``(d,)``, ``v_negs`` ``(K, d)``, all already l2-normalised;
    the dot products are differentiated directly (no normalisation in between).

    - ``"nt_xent"``: ``(1 - exp(u^T v+/tau)/Z(u))/tau v+ - sum_v- exp(u^T v-/tau)/Z(u)/tau v-``
      with ``Z(u) = sum_{v in {v+, v-}} exp(u^T v / tau)``.
    - ``"nt_logistic"``: ``sigma(-u^T v+/tau)/tau v+ - sigma(u^T v-/tau)/tau v-``.
    - ``"margin_triplet"``: ``v+ - v-`` if ``u^T v+ - u^T v- < m`` else 0.

    The last two are per triplet; with K negatives they are averaged over the K
    triplets, as :func:`nt_logistic` and :func:`margin_triplet` do.

    Book: chapter 3, ``book/03_nt_xent.ipynb``.
    """
    if loss not in LOSSES:
        raise ConfigError(f"unknown loss {loss!r}; choose one of {sorted(LOSSES)}")
    if u.dim() != 1 or v_pos.shape != u.shape or v_negs.dim() != 2 or v_negs.shape[1] != u.shape[0] \
            or v_negs.shape[0] < 1:
        raise ConfigError(f"need u and v_pos of shape (d,) and v_negs of shape (K>=1, d), got "
                          f"{tuple(u.shape)}, {tuple(v_pos.shape)}, {tuple(v_negs.shape)}")
    s_pos, s_neg = u @ v_pos, v_negs @ u
    if loss == "margin_triplet":
        active = (s_pos - s_neg < margin).to(u.dtype)
        return (active.unsqueeze(1) * (v_pos - v_negs)).mean(0)
    check_temperature(temperature)
    if loss == "nt_xent":
        p = torch.softmax(torch.cat([s_pos.view(1), s_neg]) / temperature, 0)  # exp(.)/Z(u)
        return (1 - p[0]) / temperature * v_pos - (p[1:] / temperature) @ v_negs
    return (torch.sigmoid(-s_pos / temperature) / temperature * v_pos
            - (torch.sigmoid(s_neg / temperature) / temperature) @ v_negs / len(v_negs))


# ----------------------------------------------------------------------- Table 5
@torch.no_grad()
def contrastive_stats(z_a: Tensor, z_b: Tensor, temperature: float = 0.5,
                      normalize: bool = True) -> dict[str, float]:
    """Table 5's diagnostics of the contrastive task.

    ``"accuracy"``: fraction of the 2N anchors whose positive is the most similar
    of the 2N - 1 candidates. ``"entropy"``: mean entropy (nats) of the softmax
    over those candidates, at most ``log(2N - 1)``.

    Book: chapter 3, ``book/03_nt_xent.ipynb``.
    """
    check_temperature(temperature)
    _check_pairs(z_a, z_b)
    logits, pos_cols, _ = _logits(z_a, z_b, temperature, normalize)
    accuracy = (logits.argmax(1) == pos_cols).float().mean().item()
    entropy = torch.special.entr(torch.softmax(logits, 1)).sum(1).mean().item()
    return {"accuracy": accuracy, "entropy": entropy}


# The registry that Config.validate checks --loss against and that training calls through: each loss
# takes (z_a, z_b), the Config fields named like its other parameters (temperature, normalize, margin,
# semi_hard) and, under torchrun, the gathered batch (z_a_all, z_b_all, offset).
LOSSES: dict[str, Callable[..., Tensor]] = {
    "nt_xent": nt_xent,
    "nt_logistic": nt_logistic,
    "margin_triplet": margin_triplet,
}
