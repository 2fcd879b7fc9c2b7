"""Training on many devices: torchrun, global BN and negatives gathered across ranks (Sec. 2.2).

SimCLR's batch is split over devices, but its loss needs every view of the
global batch as a negative, and its batch norm must not let the two views of
an image, which sit on the same device, compare statistics only with each
other ("Global BN"). This module provides the three pieces, on PyTorch's own
engine (``torch.distributed``; launched by ``torchrun``):

- :func:`setup` reads torchrun's environment and joins the process group
  (NCCL on GPUs, gloo on CPUs).
- :func:`gather` all-gathers projections with a backward that returns to each
  rank the sum of every rank's gradient for its rows, so that, with DDP's
  gradient averaging, the update equals the single-process update over the
  global batch.
- :func:`convert_global_bn` swaps every BatchNorm for synchronised batch norm:
  ``torch.nn.SyncBatchNorm`` on GPUs, :class:`GlobalBatchNorm` (the same
  computation with differentiable all-reduces, which gloo supports) on CPUs.
- :func:`wrap_ddp` wraps the model in ``DistributedDataParallel`` (gradients
  averaged over ranks, no per-forward buffer broadcast).
- :func:`all_max` and :func:`all_mean` let every rank take the same decision
  (stop on a preemption signal) and log the same, global, loss.
- :func:`describe_device` names the device for results files, and
  :func:`autocast_dtype` picks the mixed-precision dtype it supports.

Gradient bookkeeping (why the factors below are right): each rank r computes
``L_r``, the mean of NT-Xent over its own 2n anchors, contrasted with all 2N
gathered views; the global loss is ``L = mean_r L_r``. The gather's backward
and GlobalBatchNorm's gather of statistics make the gradient that reaches rank r's own
activations ``d(sum_q L_q)/d(rows of r) = W dL/d(rows of r)``; DDP then
averages the parameter gradients over the W ranks, which divides by W again,
so every rank applies exactly ``dL/dtheta``, the single-process gradient over
the global batch (``tests/test_distributed.py`` checks both factors).

Book: chapter 7 (``book/07_scaling_up.ipynb``); chapter 5 shows why global BN matters.
"""
from __future__ import annotations

import datetime
import inspect
import os
import platform
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, on ``device``."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> this rank's GPU if there is one, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for but no GPU is visible; use --device cpu")
        n_gpu = torch.cuda.device_count()
        if name == "cuda" and local_rank >= n_gpu:
            raise ConfigError(f"process {local_rank} of this node has no GPU of its own ({n_gpu} visible); "
                              f"use torchrun --nproc_per_node {n_gpu} or fewer")
        return torch.device("cuda", local_rank if name == "cuda" else int(name.split(":")[1]))
    if name not in ("cpu", "mps"):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    return torch.device(name)


def describe_device(device: str | torch.device = "cpu") -> str:
    """The device as results files and chapters name it, e.g. ``CPU (x86_64, 2 threads, torch 2.5.1)``."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return f"{torch.cuda.get_device_name(dev)} (torch {torch.__version__})"
    return f"CPU ({platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__})"


def autocast_dtype(device: str | torch.device) -> torch.dtype | None:
    """The dtype of mixed precision on ``device``: bf16 where the GPU has it, fp16 on other CUDA GPUs,
    None (no autocast: float32) on the CPU and elsewhere.

    bf16 needs compute capability 8.0 or newer (A100, H100, RTX 30xx...); T4 and V100 cards have only
    fp16, whose small range needs a gradient scaler when training (``torch.amp.GradScaler``). Emulated
    bf16 does not count: it is slower than float32.
    """
    dev = torch.device(device)
    if dev.type != "cuda":
        return None
    with torch.cuda.device(dev):                  # the question is about this GPU, not the current one
        try:
            bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:                         # torch < 2.3: no emulation to exclude
            bf16 = torch.cuda.is_bf16_supported()
    return torch.bfloat16 if bf16 else torch.float16


def setup(device: str = "auto") -> DistInfo:
    """Join the process group that ``torchrun`` describes (or run alone).

    torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous
    variables; without them this returns a single-process :class:`DistInfo`.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30),
                                **({"device_id": dev} if dev.type == "cuda" else {}))
    return DistInfo(rank, world, local_rank, dev)


def cleanup() -> None:
    """Leave the process group (if any)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class _Gather(torch.autograd.Function):
    """all_gather whose backward sums each rank's gradient for this rank's rows."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.rank, ctx.n = dist.get_rank(), x.shape[0]
        out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        return torch.cat(out)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.clone(memory_format=torch.contiguous_format)  # never reduce autograd's buffer in place
        dist.all_reduce(grad)  # every rank's loss depends on every rank's rows
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]


def gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (same shape on every rank) from all ranks, in rank order, with gradients.

    The backward all-reduces (sums) the gradient, so rank r's rows receive
    sum over ranks of d loss_rank / d rows_r. DDP then averages parameter
    gradients over ranks, which gives exactly the gradient of the mean loss
    over the global batch. Without a process group it returns ``x``.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return _Gather.apply(x)


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose mean and variance are taken over the global batch (Sec. 2.2, "Global BN").

    The paper notes that with batch norm computed per device, the two views of
    an image (which sit on the same device) can share information through the
    batch statistics and the model can "improve prediction accuracy without
    improving representations"; it therefore aggregates BN mean and variance
    over all devices. This is numerically what ``torch.nn.SyncBatchNorm``
    computes (which needs CUDA), written with one differentiable all-gather of
    each rank's statistics (and one all-reduce in backward) so that it also
    runs on CPUs with gloo. Training output, input gradients and the
    running statistics equal those of ``nn.BatchNorm*`` applied to the
    concatenated global batch. With no process group, or in eval mode, it is
    plain batch norm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {input.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        c = x.shape[1]
        dims = [0] + list(range(2, x.dim()))
        shape = [1, c] + [1] * (x.dim() - 2)
        xf = x.to(torch.promote_types(x.dtype, torch.float32))
        # One differentiable all-gather of each rank's (mean, sum of squared deviations, count),
        # combined as Chan et al. do (as stable as plain batch norm); its backward sums every
        # rank's gradient for this rank's statistics. The same communication as SyncBatchNorm.
        mean_r = xf.mean(dims)
        m2_r = (xf - mean_r.view(shape)).square().sum(dims)
        count = torch.full((1,), x.numel() / c, dtype=xf.dtype, device=x.device)
        stats = _Gather.apply(torch.cat([mean_r, m2_r, count]).unsqueeze(0))  # (W, 2C + 1)
        counts = stats[:, 2 * c:]
        n = counts.sum().detach()  # values per channel over all ranks
        if float(n) < 2:
            raise ValueError(f"global batch norm needs more than 1 value per channel, got {int(n)}")
        mean = (stats[:, :c] * counts).sum(0) / n
        var = (stats[:, c:2 * c] + counts * (stats[:, :c] - mean).square()).sum(0) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach().to(self.running_mean.dtype), alpha=m)
                unbiased = var.detach() * n / (n - 1)
                self.running_var.mul_(1 - m).add_(unbiased.to(self.running_var.dtype), alpha=m)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_global_bn(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm by synchronised BN (SyncBatchNorm on GPU, GlobalBatchNorm on CPU)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        out = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        if module.affine:
            with torch.no_grad():
                out.weight.copy_(module.weight)
                out.bias.copy_(module.bias)
        if module.track_running_stats:
            out.running_mean.copy_(module.running_mean)
            out.running_var.copy_(module.running_var)
            out.num_batches_tracked.copy_(module.num_batches_tracked)
        out.train(module.training)
        if module.affine:
            out.weight.requires_grad_(module.weight.requires_grad)
            out.bias.requires_grad_(module.bias.requires_grad)
    for name, child in module.named_children():
        out.add_module(name, convert_global_bn(child, device))
    return out


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in ``DistributedDataParallel``, which averages parameter gradients over the ranks.

    Buffers are not broadcast from rank 0 at every forward: with global BN the
    running statistics are already equal on every rank, and with local BN
    (``sync_bn=off``) each rank keeps its own (rank 0's are saved). torch >= 2.13
    calls this ``forward_sync_buffers=False`` and warns on every rank for the
    older ``broadcast_buffers=False``, which is passed only to older versions.
    """
    params = inspect.signature(nn.parallel.DistributedDataParallel.__init__).parameters
    no_sync = {"forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers": False}
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None, **no_sync)


def _collective_device() -> torch.device:
    """The device that the default group's backend reduces on (NCCL: this rank's GPU)."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_max(*values: float, device: torch.device | None = None) -> tuple[float, ...]:
    """Each value's maximum over all ranks (one all-reduce); bools come back as bools.

    Used each step for "a preemption signal or the time limit was hit on some
    rank" (every rank then checkpoints and stops at the same step instead of
    some waiting forever in the next collective) and for the time budget's
    clock (every rank anneals the learning rate by the same elapsed time).
    Identity when alone.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device or _collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return tuple(bool(r) if isinstance(v, bool) else r for v, r in zip(values, t.tolist()))


def all_mean(x: torch.Tensor) -> torch.Tensor:
    """The mean of ``x`` over ranks (a detached copy; ``x`` itself when alone).

    For logging: each rank's NT-Xent is the mean over its own anchors, so the
    mean over ranks is the loss of the global batch, the number a
    single-process run with the same batch would log.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    y = x.detach().clone()
    dist.all_reduce(y)
    return y / dist.get_world_size()


def barrier() -> None:
    """Wait for every rank (no-op when alone)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
