"""LARS, learning-rate scaling and the warmup + cosine schedule (Sec. 2.2, Appendix B.1).

SimCLR trains with large batches, where plain SGD with momentum is unstable;
it uses LARS (You et al., 2017): each layer's step is rescaled by a trust
ratio eta * ||w|| / ||grad + wd * w||. As in the official code, biases and
batch-norm parameters get neither weight decay nor the trust ratio. The
learning rate is scaled from the batch size (lr = 0.3 x B / 256, or
0.075 x sqrt(B) for the square-root rule of Appendix B.1), warmed up
linearly for 10 epochs and then decayed with a cosine without restarts.

Book: chapter 5 (``book/05_batch_size_and_optimizer.ipynb``).
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

from .errors import ConfigError


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Split parameters as the official SimCLR code does.

    Weights of convolutions and linear layers get weight decay and LARS
    adaptation; biases and batch-norm parameters (every parameter with one
    dimension) get neither (``lars_exclude=True``).
    """
    decay, exclude = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (exclude if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay, "lars_exclude": False},
            {"params": exclude, "weight_decay": 0.0, "lars_exclude": True}]



def check_lr(lr: float) -> None:
    """The one rule for a learning rate (used by :class:`LARS` and ``Config.validate``): finite, >= 0."""
    if not (lr >= 0 and math.isfinite(lr)):
        raise ConfigError(f"learning rate must be a finite number >= 0, got {lr}")

class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling, as in SimCLR's official ``lars_optimizer.py``.

    For each parameter w with gradient g (weight decay ``wd``, momentum ``m``)::

        g  <- g + wd * w                                  (not for excluded params)
        r  <- eta * ||w|| / ||g||  if both norms > 0 else 1   (1 for excluded params)
        v  <- m * v + lr * r * g
        w  <- w - v

    Parameter groups with ``lars_exclude=True`` (see :func:`param_groups`) skip
    weight decay and adaptation, i.e. they follow SGD with momentum.
    ``foreach=True`` (the default) does each line for all of a group's
    parameters at once with ``torch._foreach_*`` ops (a few kernels per group
    instead of a few per parameter; 5x faster on a GPU); ``foreach=False`` runs
    ``_group_step_reference``, the same update written parameter by parameter.
    Both give the same parameters (tested to 1e-12 in float64).

    Example: the weight of a linear layer is adapted, its bias is not. From zero
    momentum, the first step moves the weight by ``lr * eta * ||w||`` whatever the
    size of the gradient (scaling the loss by 1000, as here, leaves the step unchanged):

    >>> import torch
    >>> from torch import nn
    >>> from simclr_lite.optim import LARS, param_groups
    >>> _ = torch.manual_seed(0)
    >>> layer = nn.Linear(4, 2)
    >>> opt = LARS(param_groups(layer, weight_decay=1e-6), lr=0.1, eta=1e-3)
    >>> [(len(g["params"]), g["lars_exclude"]) for g in opt.param_groups]  # [weight], [bias]
    [(1, False), (1, True)]
    >>> (1000 * layer(torch.randn(8, 4)).pow(2).mean()).backward()
    >>> w = layer.weight.detach().clone()
    >>> opt.step()
    >>> round(((layer.weight - w).norm() / w.norm()).item(), 6)      # lr * eta
    0.0001
    """

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.9, weight_decay: float = 1e-6,
                 eta: float = 1e-3, lars_exclude: bool = False, foreach: bool = True) -> None:
        check_lr(lr)
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, lars_exclude=lars_exclude)
        super().__init__(params, defaults)
        self.foreach = bool(foreach)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            (self._group_step_foreach if self.foreach else self._group_step_reference)(group)
        return loss

    def _buffer(self, p: torch.Tensor) -> torch.Tensor:
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p)
        return state["momentum_buffer"]

    def _group_step_reference(self, group: dict) -> None:
        """The update above, one parameter at a time (the readable reference)."""
        wd, m, eta, lr, exclude = (group["weight_decay"], group["momentum"], group["eta"],
                                   group["lr"], group["lars_exclude"])
        for p in group["params"]:
            if p.grad is None:
                continue
            g = p.grad
            if not exclude:
                if wd != 0:
                    g = g.add(p, alpha=wd)
                w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
                one = torch.ones_like(w_norm)
                trust = torch.where((w_norm > 0) & (g_norm > 0), eta * w_norm / g_norm, one)
                g = g * trust
            buf = self._buffer(p)
            buf.mul_(m).add_(g, alpha=lr)
            p.sub_(buf)

    def _group_step_foreach(self, group: dict) -> None:
        """:meth:`_group_step_reference` for all of the group's parameters at once (no host sync)."""
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        wd, m, eta, lr = group["weight_decay"], group["momentum"], group["eta"], group["lr"]
        grads = [p.grad for p in params]
        if not group["lars_exclude"]:
            if wd != 0:
                grads = torch._foreach_add(grads, params, alpha=wd)
            w_norm = torch.stack(torch._foreach_norm(params))
            g_norm = torch.stack(torch._foreach_norm(grads))
            trust = torch.where((w_norm > 0) & (g_norm > 0), eta * w_norm / g_norm, torch.ones_like(w_norm))
            grads = torch._foreach_mul(grads, list(trust.unbind()))
        bufs = [self._buffer(p) for p in params]
        torch._foreach_mul_(bufs, m)
        torch._foreach_add_(bufs, grads, alpha=lr)
        torch._foreach_sub_(params, bufs)


def scaled_lr(base_lr: float, batch_size: int, scaling: str = "linear") -> float:
    """The learning rate for a batch size (Sec. 2.2 and Appendix B.1).

    ``linear``: ``base_lr * batch_size / 256`` (the paper's 0.3 x B/256);
    ``sqrt``: ``base_lr * sqrt(batch_size)`` (the paper's 0.075 x sqrt(B));
    ``none``: ``base_lr`` unchanged.
    """
    if scaling == "linear":
        return base_lr * batch_size / 256
    if scaling == "sqrt":
        return base_lr * math.sqrt(batch_size)
    if scaling == "none":
        return base_lr
    raise ConfigError(f"unknown lr scaling {scaling!r}; choose linear, sqrt or none")


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, at_least: float = 0.0) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based).

    Linear warmup from ~0 to 1 over ``warmup_steps``, then cosine decay to 0 at
    ``total_steps`` without restarts (Sec. B.1). Applied per step.
    ``at_least`` (in [0, 1]) moves the decay's progress forward to at least that
    fraction: ``Config.time_budget`` passes the fraction of the time budget used,
    so the schedule ends when the budget does (budgeted training).
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = max(at_least, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float,
                    momentum: float = 0.9) -> torch.optim.Optimizer:
    """``lars``, ``sgd`` (momentum) or ``adam``, with :func:`param_groups`."""
    groups = param_groups(model, weight_decay)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD([{k: v for k, v in g.items() if k != "lars_exclude"} for g in groups],
                               lr=lr, momentum=momentum, nesterov=True)
    if name == "adam":
        return torch.optim.AdamW([{k: v for k, v in g.items() if k != "lars_exclude"} for g in groups], lr=lr)
    raise ConfigError(f"unknown optimizer {name!r}; choose lars, sgd or adam")
