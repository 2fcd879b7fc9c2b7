"""SimCLR pretraining (Algorithm 1): :func:`pretrain`, one loop a reader follows top to bottom.

Each step draws a batch of N images, makes two views of each with
independently sampled augmentations (:class:`~simclr_lite.augment.SimCLRAugment`,
on the training device), encodes both views in one forward pass, and
minimises the loss (NT-Xent, eq. 1, or Table 2's others) over the 2N projections.
The dataset is decoded once and kept on the device as uint8 (``loader=memory``),
or decoded per batch by DataLoader workers (``loader=stream``).

What each step draws is a function of integers (:mod:`simclr_lite.sampling`),
so a run resumed from any checkpoint continues exactly, and 1, 2, 4 or 8
processes (torchrun) train alike. The configuration is in :mod:`simclr_lite.config`,
the run folder in :mod:`simclr_lite.run`, the data splits in :mod:`simclr_lite.splits`.
Two small objects carry what the loop shares: :class:`RunState` (where training
stands: step, epoch, clock, running losses) and :class:`Stop` ("stop now, and why":
a signal, the time limit or the time budget).

Host synchronisation: a steady-state step reads nothing back from the device.
The NaN/inf check, the logged loss and (with several processes) the shared
stop decision are read every ``nan_check_every`` steps (default: every step on
a CPU, where reading is free, every ``log_every`` steps on a GPU).

Book: chapter 1 (``book/01_simclr_in_one_picture.ipynb``) walks through this loop.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import signal
import sys
import time
from typing import Any, Callable, NamedTuple, Sequence

import torch

from . import distributed as D
from .augment import SimCLRAugment
from .checkpoint import FORMAT, atomic_save, load_model_state, rng_state, set_rng_state
from .config import Config, build_model
from .errors import ConfigError, Preempted, TrainingError
from .evaluate import knn_accuracy
from .losses import LOSSES
from .optim import build_optimizer, scaled_lr, warmup_cosine
from .run import RunFolder, append_jsonl, write_json
from .sampling import Sharding, epoch_permutation, generator, subset_indices
from .splits import Split, load_splits

__all__ = ["pretrain", "RunState", "Stop"]


class Stop:
    """Answers "stop now, and why" after each step: a signal, the time limit or the time budget.

    SIGTERM and SIGUSR1 (SLURM's preemption signals), SIGINT (Ctrl-C) and SIGHUP (a closed terminal)
    are caught while training: the run checkpoints, then stops. Alone, the decision is local every
    step (no host sync); with several processes it is shared (one all-reduce, a host sync) every
    ``every`` steps, so all ranks stop at the same step and anneal the learning rate by the same
    clock. ``time_fraction`` (the share of ``time_budget`` used) drives the schedule's end.
    """
    SIGNALS = tuple(s for s in (signal.SIGTERM, getattr(signal, "SIGUSR1", None), signal.SIGINT,
                                getattr(signal, "SIGHUP", None)) if s is not None)

    def __init__(self, cfg: Config, world_size: int = 1, every: int = 1,
                 device: torch.device | None = None) -> None:
        self.cfg, self.world_size, self.every, self.device = cfg, world_size, every, device
        self.signal: int | None = None          # the signal received (in this process)
        self.reason: str | None = None          # "signal", "time_limit" or "time_budget" once decided
        self.time_fraction = 0.0
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "Stop":
        for s in self.SIGNALS:
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread (e.g. inside a notebook worker)
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signal = signum

    def __exit__(self, *exc: Any) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old.clear()

    @property
    def out_of_budget(self) -> bool:
        return self.time_fraction >= 1

    def after_step(self, step: int, elapsed: float) -> bool:
        """True when the run stops after ``step`` (``elapsed`` training seconds); :attr:`reason` says why."""
        signalled = self.signal is not None
        over_time = bool(self.cfg.time_limit) and elapsed > self.cfg.time_limit * 60
        shared = self.world_size == 1 or step % self.every == 0
        if not shared:
            return False
        if self.world_size > 1:
            signalled, over_time, elapsed = D.all_max(signalled, over_time, elapsed, device=self.device)
        if self.cfg.time_budget:
            self.time_fraction = elapsed / (self.cfg.time_budget * 60)
        self.reason = ("signal" if signalled else "time_limit" if over_time
                       else "time_budget" if self.out_of_budget else None)
        return self.reason is not None


@dataclasses.dataclass
class RunState:
    """Where training stands: what a checkpoint stores besides the weights, the clock and the running
    losses (device tensors: adding a step's loss reads nothing back)."""
    epoch: int = 0
    step_in_epoch: int = 0
    step: int = 0
    wall_before: float = 0.0             # training seconds of the runs this one resumes
    t_start: float = dataclasses.field(default_factory=time.time)
    epoch_loss: torch.Tensor | None = None   # sum of this epoch's losses
    epoch_n: int = 0
    window_loss: torch.Tensor | None = None  # sum since the last log line
    window_n: int = 0
    first_bad: torch.Tensor | None = None    # step of the first NaN/inf loss (-1: none)

    @classmethod
    def on(cls, device: torch.device, dtype: torch.dtype) -> "RunState":
        return cls(epoch_loss=torch.zeros((), device=device, dtype=dtype),
                   window_loss=torch.zeros((), device=device, dtype=dtype),
                   first_bad=torch.full((), -1, dtype=torch.long, device=device))

    def wall_s(self) -> float:
        """Training seconds so far, the resumed runs' included."""
        return self.wall_before + time.time() - self.t_start

    def start_epoch(self, s0: int) -> None:
        if s0 == 0:  # (a run resumed mid-epoch keeps the running mean it restored)
            self.epoch_loss.zero_()
            self.epoch_n = 0

    def add(self, loss: torch.Tensor, s: int) -> None:
        """Count step ``s`` of the epoch, done with ``loss``."""
        self.first_bad = torch.where(~torch.isfinite(loss) & (self.first_bad < 0), self.step, self.first_bad)
        self.epoch_loss += loss
        self.window_loss += loss
        self.step, self.step_in_epoch, self.epoch_n, self.window_n = (self.step + 1, s + 1, self.epoch_n + 1,
                                                                      self.window_n + 1)

    def window_mean(self) -> float:
        """The mean loss since the last log line (averaged over ranks; a host sync); starts a new window."""
        mean = (D.all_mean(self.window_loss) / self.window_n).item()
        self.window_loss.zero_()
        self.window_n = 0
        return mean

    def check_finite(self, folder: RunFolder) -> None:
        """Stop at the first non-finite loss, before anything is saved from the broken weights (a host sync);
        the message says whether ``folder`` holds a good checkpoint to go back to."""
        fb = int(self.first_bad)
        if fb >= 0:
            kept = "the last good checkpoint is kept" if folder.has_checkpoint() else "no checkpoint was written"
            raise TrainingError(
                f"loss became NaN/inf at step {fb} (epoch {self.epoch}); {kept}. "
                f"Usual causes: learning rate too high (--lr), temperature too low (--temperature), "
                f"or fp16 overflow (--amp bf16 or off)")


class Parts(NamedTuple):
    """The objects a checkpoint saves and restores."""
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler


class TwoViews:
    """t(x) and t'(x) of Algorithm 1 for this rank's images: view 1's shards, then view 2's, each shard
    with its own generator (a function of seed, step, view and shard: exact resume, any process count)."""

    def __init__(self, cfg: Config, augment: Any, shard: Sharding, rank: int, dtype: torch.dtype) -> None:
        if augment is None:
            augment = SimCLRAugment(cfg.image_size, strength=cfg.strength, blur=cfg.blur,
                                    scale=(cfg.min_scale, 1.0))
        fns = tuple(augment) if isinstance(augment, Sequence) else (augment, augment)
        if len(fns) != 2 or not all(callable(f) for f in fns):
            raise ConfigError("augment must be one callable or a pair of callables (one per view)")
        self.fns, self.cfg, self.shard, self.rank, self.dtype = fns, cfg, shard, rank, dtype

    def __call__(self, x: torch.Tensor, step: int) -> torch.Tensor:
        parts = [(v, x[rows], generator(x.device, self.cfg.seed, step, v, sid))
                 for v in range(2) for sid, rows in self.shard.shards(self.rank)]
        f = self.fns[0]
        if f is self.fns[1] and isinstance(f, SimCLRAugment):   # one apply for every shard (GPU launches)
            views = f.concat([c for _, c, _ in parts], [g for _, _, g in parts])
        else:
            views = torch.cat([self.fns[v](c, generator=g) for v, c, g in parts])
        views = views.to(self.dtype)
        return views.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else views


class _Compiled:
    """The network through ``torch.compile``, or the eager one (with a warning) once compiling has
    failed (e.g. no C++ compiler for inductor on a CPU)."""

    def __init__(self, net: torch.nn.Module, compile: bool) -> None:
        self.net, self.fn = net, (torch.compile(net) if compile else net)

    def __call__(self, x: torch.Tensor) -> Any:
        try:
            return self.fn(x)
        except Exception as e:  # noqa: BLE001
            if self.fn is self.net:
                raise
            print(f"warning: torch.compile failed ({type(e).__name__}: {str(e).strip()[:100]}); "
                  f"training without it", file=sys.stderr)
            self.fn = self.net
            return self.fn(x)


def _global_batch(z_a: torch.Tensor, z_b: torch.Tensor, shard: Sharding, rank: int) -> dict[str, Any]:
    """Under torchrun, every rank's anchors meet the negatives of the global batch (Sec. 2.2)."""
    if shard.world_size == 1:
        return {}
    return dict(z_a_all=D.gather(z_a), z_b_all=D.gather(z_b), offset=rank * shard.local_batch)


def pretrain(cfg: Config, out: str | os.PathLike | None = None, resume: bool = False,
             progress: bool = True, data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
             augment: Callable[..., torch.Tensor] | Sequence[Callable[..., torch.Tensor]] | None = None,
             extend: bool = False) -> dict[str, Any]:
    """Run SimCLR pretraining; returns the run summary (also written to ``out/run.json``).

    ``out`` (optional) is the run folder (:mod:`simclr_lite.run`), made only once the inputs
    are accepted. ``resume`` continues the run in ``out`` exactly; ``extend`` (with ``resume``)
    lets a larger ``cfg.epochs`` re-plan its schedule. ``data``: ``(train_x, train_y, test_x,
    test_y)`` uint8 tensors instead of ``cfg.data`` (the book's chapters). With ``out=None``
    nothing is written and the summary includes the trained ``model`` and the metric ``history``.
    ``augment`` replaces :class:`SimCLRAugment`: one callable ``f(images, generator=g)`` or a
    pair, one per view (Fig. 5).

    >>> import torch
    >>> from simclr_lite.config import Config
    >>> from simclr_lite.train import pretrain
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randint(0, 256, (64, 3, 16, 16), dtype=torch.uint8, generator=g)
    >>> y = torch.arange(64) % 4
    >>> cfg = Config(arch="resnet10", width=0.125, image_size=16, epochs=2, batch_size=32, knn_k=5,
    ...              warmup_epochs=0, device="cpu", channels_last=False, log_every=1)
    >>> run = pretrain(cfg, data=(x, y, x[:16], y[:16]), progress=False)
    >>> run["status"], run["steps"], run["epochs"]          # 64 images / batch 32 = 2 steps an epoch
    ('completed', 4, 2.0)
    >>> [r["kind"] for r in run["history"]]                   # a line per step, one per epoch (with kNN)
    ['step', 'step', 'epoch', 'step', 'step', 'epoch']
    >>> 0 <= run["knn_top1"] <= 1
    True
    """
    # ---- inputs: config, processes, data; nothing is written until they are accepted
    cfg.validate()
    info = D.setup(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dev, W, rank = info.device, info.world_size, info.rank
    shard = Sharding.of(cfg.batch_size, W, cfg.aug_shards)
    folder = RunFolder(out, writer=info.is_main)          # rank 0 alone writes
    folder.check(cfg, resume, extend)
    if extend:
        cfg = dataclasses.replace(cfg, extended_from=cfg.extended_from or folder.planned_epochs())
    t_data = time.time()
    train, test, steps_per_epoch = _load_data(cfg, data, progress and info.is_main)
    train_images = train.x.to(dev) if train.stream is None else None
    data_id = train.fingerprint() if out is not None else None
    data_time_s = time.time() - t_data
    total_steps = cfg.epochs * steps_per_epoch

    # ---- f and g, the views t and t', the loss, LARS with warmup + cosine, precision
    model, dtype = _model(cfg, dev, W)
    net = _Compiled(D.wrap_ddp(model, dev) if W > 1 else model, cfg.compile)
    two_views = TwoViews(cfg, augment, shard, rank, dtype)
    loss_fn, loss_args = LOSSES[cfg.loss], cfg.loss_args()
    sync_every = cfg.nan_check_every or (1 if dev.type == "cpu" else cfg.log_every)   # host syncs
    stop = Stop(cfg, W, sync_every, dev)
    opt, sched = _optimiser(cfg, model, steps_per_epoch, stop)
    amp_dtype, scaler = _precision(cfg, dev)
    parts = Parts(model, opt, sched, scaler)

    # ---- the run folder (locked while written), and where a resumed run stands
    state = RunState.on(dev, dtype)
    try:
        ckpt = folder.open(resume)
        done = folder.finished_summary(ckpt) if not extend else None
        if done is not None:   # its schedule has ended: nothing to train, and its results are kept
            return {**done, "already_finished": True}
        if ckpt is not None:
            _restore(ckpt, state, parts, data_id, folder)
        folder.start(cfg, state.step)
        log = _Log(folder, progress and info.is_main, total_steps, state.step)
        summary = _train(cfg, folder, state, parts, log, _Loop(train, test, steps_per_epoch, train_images,
                                                                 two_views, net, loss_fn, loss_args, shard,
                                                                 rank, amp_dtype, stop, data_id))
        summary.update(data_time_s=round(data_time_s, 2), world_size=W, device=D.describe_device(dev))
        if folder.writer:
            write_json(folder.path / "run.json", summary, folder.fix())
    finally:
        folder.close()
    if out is None:
        summary.update(model=model, history=log.history)
    return summary


class _Loop(NamedTuple):
    """What the loop reads and does not change: data, views, network, loss, sharding, precision, stop."""
    train: Split
    test: Split
    steps_per_epoch: int
    train_images: torch.Tensor | None
    two_views: TwoViews
    net: _Compiled
    loss_fn: Callable[..., torch.Tensor]
    loss_args: dict[str, Any]
    shard: Sharding
    rank: int
    amp_dtype: torch.dtype | None
    stop: Stop
    data_id: str | None


def _train(cfg: Config, folder: RunFolder, state: RunState, parts: Parts, log: "_Log", L: _Loop) -> dict[str, Any]:
    """Algorithm 1: for each minibatch, two views, one forward pass, the loss, one update."""
    model, opt, sched, scaler = parts
    dev, is_main = state.epoch_loss.device, L.rank == 0
    state.t_start = time.time()
    start_epoch, status, knn, bank = state.epoch, "completed", None, len(L.train)
    save = lambda: _save(folder, state, cfg, parts, L.data_id)   # noqa: E731 - every rank (it all-reduces)
    model.train()
    with L.stop as stop:
        for epoch in range(start_epoch, cfg.epochs):
            t_epoch, s0, evaluated = time.time(), (state.step_in_epoch if epoch == start_epoch else 0), False
            state.start_epoch(s0)
            perm = epoch_permutation(len(L.train), cfg.seed, epoch)
            rows = [perm[s * cfg.batch_size:(s + 1) * cfg.batch_size][L.shard.rows(L.rank)]
                    for s in range(s0, L.steps_per_epoch)]
            for s, x in zip(range(s0, L.steps_per_epoch), L.train.batches(rows, cfg, dev, L.train_images)):
                views = L.two_views(x, state.step)                                 # t(x), t'(x)
                with torch.autocast(dev.type, dtype=L.amp_dtype or torch.float32, enabled=L.amp_dtype is not None):
                    _, z = L.net(views)                                            # z = g(f(view)), both views
                z_a, z_b = z.to(views.dtype).chunk(2)                              # the loss in float32/64
                loss = L.loss_fn(z_a, z_b, **L.loss_args, **_global_batch(z_a, z_b, L.shard, L.rank))
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)                                                   # LARS update
                scaler.update()
                state.add(loss.detach(), s)
                stop_now = stop.after_step(state.step, state.wall_s())
                sched.step()                                                       # warmup, then cosine
                if state.step % stop.every == 0 or state.step % cfg.log_every == 0:
                    state.check_finite(folder)
                if state.step % cfg.log_every == 0:
                    log({"kind": "step", "step": state.step, "epoch": epoch + (s + 1) / L.steps_per_epoch,
                         "loss": state.window_mean(), "lr": sched.get_last_lr()[0], "time_s": round(state.wall_s(), 2)})
                log.tick()
                mid_epoch = s + 1 < L.steps_per_epoch
                if mid_epoch and (stop_now or (cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0)):
                    save()
                if mid_epoch and stop_now:
                    break
            if state.step_in_epoch == L.steps_per_epoch:
                # ---- end of epoch: monitor, log, checkpoint
                last = epoch + 1 == cfg.epochs or stop.out_of_budget
                rec = {"kind": "epoch", "step": state.step, "epoch": epoch + 1,
                       "loss": (D.all_mean(state.epoch_loss) / max(1, state.epoch_n)).item(),
                       "lr": sched.get_last_lr()[0], "epoch_time_s": round(time.time() - t_epoch, 2),
                       "time_s": round(state.wall_s(), 2)}
                if is_main and (last or (cfg.knn_every and (epoch + 1) % cfg.knn_every == 0)):
                    knn, rec["knn_bank"] = _knn(model, L, cfg, final=last)
                    rec["knn_top1"], evaluated = knn, True
                log(rec)
                state.epoch, state.step_in_epoch = epoch + 1, 0
                save()
                D.barrier()
                stop_now = stop_now and not last
                if stop.out_of_budget:  # the schedule has ended at this epoch's last step
                    status = "time_budget"
                    break
            if stop_now:
                log.close()
                if stop.reason == "signal":
                    sig = stop.signal
                    name = signal.Signals(sig).name if sig else "a signal on another rank"
                    where = (f"saved a checkpoint at step {state.step} in {folder.path}; continue with --resume"
                             if folder.path is not None else f"stopped at step {state.step} (no run folder: "
                                                             f"nothing was saved)")
                    raise Preempted(f"received signal {sig or ''} ({name}): {where}", signum=sig)
                status = stop.reason
                if is_main and not evaluated:  # evaluate where it stands
                    t_stop = round(state.wall_s(), 2)
                    knn, bank = _knn(model, L, cfg, final=True)
                    log({"kind": "epoch", "step": state.step, "epoch": state.step / L.steps_per_epoch,
                         "knn_top1": knn, "knn_bank": bank, "time_s": t_stop})
                break
    log.close()
    if status == "completed" and knn is None and start_epoch == cfg.epochs and is_main:
        knn, bank = _knn(model, L, cfg, final=True)  # resumed after the last checkpoint
    n_classes = int(L.train.y.unique().numel())
    if knn is not None and n_classes < 2:
        print(f"warning: the training data has {n_classes} class: its kNN top-1 {knn:.4f} says nothing; "
              f"use a dataset with several classes", file=sys.stderr)
    return {"status": status, "steps": state.step, "epochs": state.step / L.steps_per_epoch, "knn_top1": knn,
            "knn_test_images": len(L.test), "knn_bank": bank, "wall_time_s": round(state.wall_s(), 2),
            "torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
            "train_images": len(L.train), "test_images": len(L.test), "data_fingerprint": L.data_id,
            "config": cfg.to_dict()}


def _load_data(cfg: Config, data: tuple[torch.Tensor, ...] | None,
               progress: bool = True) -> tuple[Split, Split, int]:
    """The train and test splits (limited to ``train_limit`` / ``test_limit``) and the steps per epoch.

    ``progress=False`` silences the decoding bar too; ``True`` leaves it to the terminal (shown on one).
    """
    train, test = load_splits(cfg, tensors=data, progress=None if progress else False)
    if cfg.train_limit and cfg.train_limit < len(train):
        train = train.subset(subset_indices(len(train), cfg.train_limit, cfg.seed))
    if cfg.test_limit and cfg.test_limit < len(test):
        test = test.subset(subset_indices(len(test), cfg.test_limit, cfg.seed + 1))
    steps_per_epoch = len(train) // cfg.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(f"batch size {cfg.batch_size} is larger than the {len(train)} training images; "
                          f"use --batch-size {max(2, len(train))} or less")
    return train, test, steps_per_epoch


def _model(cfg: Config, dev: torch.device, world_size: int) -> tuple[torch.nn.Module, torch.dtype]:
    """f and g, seeded, with global BN across processes (Sec. 2.2), in ``cfg.dtype`` on ``dev``."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg)
    if world_size > 1 and cfg.sync_bn in ("auto", "on"):
        model = D.convert_global_bn(model, dev)
    dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
    model = model.to(dev, dtype=dtype)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, dtype


def _optimiser(cfg: Config, model: torch.nn.Module, steps_per_epoch: int, stop: Stop,
               ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """LARS (or SGD / Adam) at the scaled learning rate, warmup then cosine per step (B.1).

    The schedule follows the larger of steps done / total and the share of the time budget
    used (``stop.time_fraction``; ``time_budget``)."""
    opt = build_optimizer(model, cfg.optimizer, scaled_lr(cfg.lr, cfg.batch_size, cfg.lr_scaling),
                          cfg.weight_decay, cfg.momentum)
    total, warmup = cfg.epochs * steps_per_epoch, int(round(cfg.warmup_epochs * steps_per_epoch))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, total, warmup, at_least=stop.time_fraction))
    return opt, sched


def _precision(cfg: Config, dev: torch.device) -> tuple[torch.dtype | None, torch.amp.GradScaler]:
    """The autocast dtype and the gradient scaler (fp16 only). ``amp=auto``: on a GPU, bf16 where the
    device has it, else fp16 (:func:`~simclr_lite.distributed.autocast_dtype`); off on a CPU."""
    if cfg.amp == "auto":
        amp_dtype = D.autocast_dtype(dev) if cfg.dtype == "float32" else None
    else:
        amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
    return amp_dtype, torch.amp.GradScaler(dev.type, enabled=amp_dtype == torch.float16)


def _knn(model: torch.nn.Module, L: _Loop, cfg: Config, final: bool) -> tuple[float, int]:
    """The kNN monitor's top-1 of h and its bank size: all training images, or ``knn_bank`` between epochs."""
    n = len(L.train)
    bank = torch.arange(n)
    if not final and 0 < cfg.knn_bank < n:  # a random subset: datasets are often stored class by class
        bank = subset_indices(n, cfg.knn_bank, cfg.seed + 2)
    dev = next(model.parameters()).device
    feats_tr = L.train.features(model.encoder, cfg, dev, rows=bank)
    feats_te = L.test.features(model.encoder, cfg, dev)
    return knn_accuracy(feats_tr, L.train.y[bank], feats_te, L.test.y, cfg.knn_k, cfg.knn_t), len(bank)


def _save(folder: RunFolder, state: RunState, cfg: Config, parts: Parts, data_id: str | None) -> None:
    """Checkpoint (every rank calls it: the running losses are averaged over ranks first), after the
    NaN check: nothing is saved from broken weights."""
    state.check_finite(folder)
    e_loss, w_loss = float(D.all_mean(state.epoch_loss)), float(D.all_mean(state.window_loss))
    if not folder.writer:
        return
    model, opt, sched, scaler = parts
    atomic_save({"format": FORMAT, "model": model.state_dict(), "optimizer": opt.state_dict(),
                 "scheduler": sched.state_dict(), "scaler": scaler.state_dict(), "epoch": state.epoch,
                 "step_in_epoch": state.step_in_epoch, "step": state.step, "rng": rng_state(),
                 "config": json.dumps(cfg.to_dict()), "epoch_loss": [e_loss, state.epoch_n],
                 "window_loss": [w_loss, state.window_n], "wall_time_s": state.wall_s(),
                 "data_fingerprint": data_id or "", "threads": torch.get_num_threads()}, folder.checkpoint)


def _restore(ckpt: dict[str, Any], state: RunState, parts: Parts, data_id: str | None, folder: RunFolder) -> None:
    """Continue from a checkpoint: weights, optimiser, schedule, RNG state, position and running losses;
    refused (before anything is written) when the training images are not the ones it was trained on."""
    saved_id = ckpt.get("data_fingerprint") or None
    if saved_id and data_id and saved_id != data_id:
        raise ConfigError(f"--resume: {folder.path} was trained on other images than these (data fingerprint "
                          f"{saved_id[:12]} vs {data_id[:12]}); pass the --data it was trained on "
                          f"(or the same images elsewhere), or use another --out")
    threads = ckpt.get("threads")
    if threads and threads != torch.get_num_threads() and state.epoch_loss.device.type == "cpu":
        print(f"warning: {folder.path} was trained with {threads} CPU threads and resumes with "
              f"{torch.get_num_threads()}: float results will differ from an uninterrupted run in the last "
              f"bits (pass --threads {threads} for an exact resume)", file=sys.stderr)
    model, opt, sched, scaler = parts
    load_model_state(model, ckpt["model"], str(folder.checkpoint))
    opt.load_state_dict(ckpt["optimizer"])
    sched.load_state_dict(ckpt["scheduler"])
    scaler.load_state_dict(ckpt["scaler"])
    set_rng_state(ckpt["rng"])
    state.epoch, state.step_in_epoch, state.step = ckpt["epoch"], ckpt["step_in_epoch"], ckpt["step"]
    state.wall_before = float(ckpt.get("wall_time_s", 0.0))
    if state.step_in_epoch:  # mid-epoch: the running means go on
        state.epoch_loss += ckpt["epoch_loss"][0]
        state.epoch_n = int(ckpt["epoch_loss"][1])
        state.window_loss += ckpt["window_loss"][0]
        state.window_n = int(ckpt["window_loss"][1])


class _Log:
    """Metric lines: kept in ``history``, appended to ``metrics.jsonl`` (rank 0) and shown on the bar."""

    def __init__(self, folder: RunFolder, progress: bool, total_steps: int, step: int) -> None:
        self.path = folder.path / "metrics.jsonl" if folder.writer else None
        self.bar, self.history = None, []
        if progress:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total_steps, initial=step, desc="pretrain", unit="step", dynamic_ncols=True)

    def __call__(self, rec: dict[str, Any]) -> None:
        self.history.append(rec)
        if self.path is not None:
            append_jsonl(self.path, rec)
        if self.bar is not None and rec["kind"] == "step":
            self.bar.set_postfix(loss=f"{rec['loss']:.3f}", lr=f"{rec['lr']:.3g}")
        elif self.bar is not None and "knn_top1" in rec and "loss" in rec:
            self.bar.write(f"epoch {rec['epoch']}: loss {rec['loss']:.4f}  kNN top-1 {rec['knn_top1']:.4f}")

    def tick(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
