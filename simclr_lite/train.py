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

Host synchronisation: a steady-state step reads nothing back from the device.
The NaN/inf check, the logged loss and (with several processes) the shared
stop decision are read every ``nan_check_every`` steps (default: every step on
a CPU, where reading is free, every ``log_every`` steps on a GPU).

Book: chapter 1 (``book/01_simclr_in_one_picture.ipynb``) walks through this loop.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import os
import platform
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from . import distributed as D
from .augment import SimCLRAugment
from .checkpoint import FORMAT, atomic_save, load_checkpoint, load_model_state, rng_state, set_rng_state
from .config import PRESETS, Config, build_model, preset
from .errors import ConfigError, Preempted, TrainingError
from .evaluate import knn_accuracy
from .losses import LOSSES
from .optim import build_optimizer, scaled_lr, warmup_cosine
from .run import append_jsonl, check_out_dir, load_run, truncate_metrics, write_json
from .sampling import Sharding, epoch_permutation, generator, subset_indices
from .splits import Split, load_splits

# Re-exported for the book's chapters, benchmarks and older imports (their home: config, run, sampling,
# distributed).
__all__ = ["pretrain", "build_loss", "StopSignals", "Config", "PRESETS", "preset", "build_model", "load_run",
           "epoch_permutation", "subset_indices", "describe_device"]
describe_device = D.describe_device


def build_loss(cfg: Config) -> Callable[..., torch.Tensor]:
    """The loss ``cfg.loss`` from :data:`~simclr_lite.losses.LOSSES`, with the Config fields it takes
    (those named like its parameters: temperature, normalize, margin, semi_hard) filled in."""
    fn = LOSSES[cfg.loss]
    params = inspect.signature(fn).parameters
    return functools.partial(fn, **{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
                                    if f.name in params})


class StopSignals:
    """Set by SIGTERM / SIGUSR1 (SLURM's preemption signals): checkpoint, then exit."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        for s in (signal.SIGTERM, getattr(signal, "SIGUSR1", None)):
            if s is not None:
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


@dataclasses.dataclass
class _Progress:
    """Where training stands: what a checkpoint stores besides the weights, and the running losses."""
    epoch: int = 0
    step_in_epoch: int = 0
    step: int = 0
    wall_before: float = 0.0   # training seconds of the runs this one resumes
    epoch_loss: torch.Tensor | None = None   # sum of this epoch's losses, on the device (no host sync)
    epoch_n: int = 0
    window_loss: torch.Tensor | None = None  # sum since the last log line
    window_n: int = 0

    def start_epoch(self, s0: int) -> None:
        if s0 == 0:  # (a run resumed mid-epoch keeps the running mean it restored)
            self.epoch_loss.zero_()
            self.epoch_n = 0

    def add(self, loss: torch.Tensor, s: int) -> None:
        """Count step ``s`` of the epoch, done with ``loss`` (device tensors: no host sync)."""
        self.epoch_loss += loss
        self.window_loss += loss
        self.step, self.step_in_epoch, self.epoch_n, self.window_n = (self.step + 1, s + 1, self.epoch_n + 1,
                                                                      self.window_n + 1)


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


def _views(cfg: Config, augment: Callable[..., torch.Tensor] | Sequence[Callable[..., torch.Tensor]] | None,
           ) -> tuple[Callable[..., torch.Tensor], ...]:
    """The two view functions t, t' (Algorithm 1): SimCLRAugment, or the caller's one or two callables."""
    if augment is None:
        augment = SimCLRAugment(cfg.image_size, strength=cfg.strength, blur=cfg.blur, scale=(cfg.min_scale, 1.0))
    fns = tuple(augment) if isinstance(augment, Sequence) else (augment, augment)
    if len(fns) != 2 or not all(callable(f) for f in fns):
        raise ConfigError("augment must be one callable or a pair of callables (one per view)")
    return fns


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


def _optimiser(cfg: Config, model: torch.nn.Module, total_steps: int, steps_per_epoch: int,
               ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR, dict[str, float]]:
    """LARS (or SGD / Adam) at the scaled learning rate, warmup then cosine per step (B.1).

    The returned ``clock`` holds the fraction of the time budget used: the schedule follows
    the larger of steps done / total and that fraction (``time_budget``)."""
    opt = build_optimizer(model, cfg.optimizer, scaled_lr(cfg.lr, cfg.batch_size, cfg.lr_scaling),
                          cfg.weight_decay, cfg.momentum)
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    clock = {"time_fraction": 0.0}
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, total_steps, warmup, at_least=clock["time_fraction"]))
    return opt, sched, clock


def _precision(cfg: Config, dev: torch.device) -> tuple[torch.dtype | None, torch.amp.GradScaler]:
    """The autocast dtype (bf16 on a GPU by default) and the gradient scaler (fp16 only)."""
    amp = cfg.amp if cfg.amp != "auto" else ("bf16" if dev.type == "cuda" and cfg.dtype == "float32" else "off")
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp), torch.amp.GradScaler(dev.type,
                                                                                         enabled=amp == "fp16")


def _augment(views: tuple[Callable[..., torch.Tensor], ...], x: torch.Tensor, shard: Sharding, rank: int,
             cfg: Config, step: int, dtype: torch.dtype) -> torch.Tensor:
    """Both views of this rank's images: view 1's shards, then view 2's, each shard with its own generator."""
    dev = x.device
    parts = [(v, x[rows], generator(dev, cfg.seed, step, v, sid)) for v in range(2) for sid, rows in shard.shards(rank)]
    if views[0] is views[1] and isinstance(views[0], SimCLRAugment):   # one apply for every shard (GPU launches)
        inp = views[0].concat([c for _, c, _ in parts], [g for _, _, g in parts])
    else:
        inp = torch.cat([views[v](c, generator=g) for v, c, g in parts])
    inp = inp.to(dtype)
    return inp.contiguous(memory_format=torch.channels_last) if cfg.channels_last else inp


def _forward_backward(f: Callable[[torch.Tensor], Any], inp: torch.Tensor, loss_fn: Callable[..., torch.Tensor],
                      opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, amp_dtype: torch.dtype | None,
                      dtype: torch.dtype, shard: Sharding, rank: int) -> torch.Tensor:
    """Both views through f and g in one pass, the loss over the (global) batch, gradients."""
    dev = inp.device
    with torch.autocast(dev.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        _, z = f(inp)
    z_a, z_b = z.to(dtype).chunk(2)        # bf16/fp16 projections: the loss runs in float32 (or float64)
    if shard.world_size > 1:  # every rank's anchors meet the negatives of the global batch (Sec. 2.2)
        loss = loss_fn(z_a, z_b, z_a_all=D.gather(z_a), z_b_all=D.gather(z_b), offset=rank * shard.local_batch)
    else:
        loss = loss_fn(z_a, z_b)
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    return loss


def _knn(model: torch.nn.Module, train: Split, test: Split, cfg: Config, dev: torch.device,
         final: bool) -> tuple[float, int]:
    """The kNN monitor's top-1 of h and its bank size: all training images, or ``knn_bank`` between epochs."""
    n = len(train)
    bank = torch.arange(n)
    if not final and 0 < cfg.knn_bank < n:  # a random subset: datasets are often stored class by class
        bank = subset_indices(n, cfg.knn_bank, cfg.seed + 2)
    feats_tr = train.features(model.encoder, cfg, dev, rows=bank)
    feats_te = test.features(model.encoder, cfg, dev)
    return knn_accuracy(feats_tr, train.y[bank], feats_te, test.y, cfg.knn_k, cfg.knn_t), len(bank)


def _check_finite(first_bad: torch.Tensor, epoch: int) -> None:
    """Stop at the first non-finite loss, before anything is saved from the broken weights (a host sync)."""
    fb = int(first_bad)
    if fb >= 0:
        raise TrainingError(
            f"loss became NaN/inf at step {fb} (epoch {epoch}); the last good checkpoint is kept. "
            f"Usual causes: learning rate too high (--lr), temperature too low (--temperature), "
            f"or fp16 overflow (--amp bf16 or off)")


def _save(path: Path | None, p: _Progress, wall_s: float, cfg: Config, model: torch.nn.Module,
          opt: torch.optim.Optimizer, sched: Any, scaler: Any) -> None:
    """Checkpoint (every rank calls it: the running losses are averaged over ranks first)."""
    e_loss, w_loss = float(D.all_mean(p.epoch_loss)), float(D.all_mean(p.window_loss))
    if path is None:
        return
    atomic_save({"format": FORMAT, "model": model.state_dict(), "optimizer": opt.state_dict(),
                 "scheduler": sched.state_dict(), "scaler": scaler.state_dict(), "epoch": p.epoch,
                 "step_in_epoch": p.step_in_epoch, "step": p.step, "rng": rng_state(),
                 "config": json.dumps(cfg.to_dict()), "epoch_loss": [e_loss, p.epoch_n],
                 "window_loss": [w_loss, p.window_n], "wall_time_s": wall_s}, path)


def _restore(path: Path, p: _Progress, model: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any,
             scaler: Any) -> None:
    """Continue from a checkpoint: weights, optimiser, schedule, RNG state, position and running losses."""
    ckpt = load_checkpoint(path)
    load_model_state(model, ckpt["model"], str(path))
    opt.load_state_dict(ckpt["optimizer"])
    sched.load_state_dict(ckpt["scheduler"])
    scaler.load_state_dict(ckpt["scaler"])
    set_rng_state(ckpt["rng"])
    p.epoch, p.step_in_epoch, p.step = ckpt["epoch"], ckpt["step_in_epoch"], ckpt["step"]
    p.wall_before = float(ckpt.get("wall_time_s", 0.0))
    if p.step_in_epoch:  # mid-epoch: the running means go on
        p.epoch_loss += ckpt["epoch_loss"][0]
        p.epoch_n = int(ckpt["epoch_loss"][1])
        p.window_loss += ckpt["window_loss"][0]
        p.window_n = int(ckpt["window_loss"][1])



class _Log:
    """Metric lines: kept in ``history``, appended to ``metrics.jsonl`` (rank 0) and shown on the bar."""

    def __init__(self, main_dir: Path | None, progress: bool, total_steps: int, step: int) -> None:
        self.path = main_dir / "metrics.jsonl" if main_dir is not None else None
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

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _Forward:
    """``step(...)``: :func:`_forward_backward` through the compiled network, or through the eager one
    (with a warning) once compiling has failed (e.g. no C++ compiler for inductor on a CPU)."""

    def __init__(self, net: torch.nn.Module, compile: bool) -> None:
        self.net, self.fn = net, (torch.compile(net) if compile else net)

    def step(self, *args: Any) -> torch.Tensor:
        try:
            return _forward_backward(self.fn, *args)
        except Exception as e:  # noqa: BLE001
            if self.fn is self.net:
                raise
            print(f"warning: torch.compile failed ({type(e).__name__}: {str(e).strip()[:100]}); "
                  f"training without it", file=sys.stderr)
            self.fn = self.net
            return _forward_backward(self.fn, *args)


def _stop_flags(stop: StopSignals, cfg: Config, clock: dict[str, float], elapsed: float, step: int,
                world_size: int, sync_every: int, dev: torch.device) -> tuple[bool, bool, bool, bool]:
    """``(signalled, over_time, out_of_budget, stop_now)`` after ``step``, and the time budget's clock.

    Alone, decided locally every step (no host sync). With several processes, shared (one
    all-reduce, a host sync) every ``sync_every`` steps, so that all ranks stop at the same
    step and anneal the learning rate by the same clock.
    """
    signalled = stop.signal is not None
    over_time = bool(cfg.time_limit) and elapsed > cfg.time_limit * 60
    shared = world_size == 1 or step % sync_every == 0
    if world_size > 1 and shared:
        signalled, over_time, elapsed = D.all_max(signalled, over_time, elapsed, device=dev)
    if shared:
        clock["time_fraction"] = elapsed / (cfg.time_budget * 60) if cfg.time_budget else 0.0
    out_of_budget = clock["time_fraction"] >= 1
    return signalled, over_time, out_of_budget, shared and (signalled or over_time or out_of_budget)


def pretrain(cfg: Config, out: str | os.PathLike | None = None, resume: bool = False,
             progress: bool = True, data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
             augment: Callable[..., torch.Tensor] | Sequence[Callable[..., torch.Tensor]] | None = None,
             ) -> dict[str, Any]:
    """Run SimCLR pretraining; returns the run summary (also written to ``out/run.json``).

    ``out`` (optional) is the run folder (:mod:`simclr_lite.run`), made only once the inputs
    are accepted. ``data``: ``(train_x, train_y, test_x, test_y)`` uint8 tensors instead of
    ``cfg.data`` (the book's chapters). With ``out=None`` nothing is written and the summary
    includes the trained ``model`` and the metric ``history``. ``augment`` replaces
    :class:`SimCLRAugment`: one callable ``f(images, generator=g)`` or a pair, one per view (Fig. 5).
    """
    # ---- inputs: config, processes, data; nothing is written until they are accepted
    cfg.validate()
    info = D.setup(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dev, W, rank = info.device, info.world_size, info.rank
    shard = Sharding.of(cfg.batch_size, W, cfg.aug_shards)
    out_dir = Path(out) if out is not None else None
    main_dir = out_dir if info.is_main else None          # rank 0 alone writes
    if main_dir is not None:
        check_out_dir(main_dir, cfg, resume)
    t_data = time.time()
    train, test, steps_per_epoch = _load_data(cfg, data, progress and info.is_main)
    train_images = train.x.to(dev) if train.stream is None else None
    data_time_s = time.time() - t_data
    views = _views(cfg, augment)
    total_steps = cfg.epochs * steps_per_epoch

    # ---- model f + g, optimiser, schedule, loss
    model, dtype = _model(cfg, dev, W)
    opt, sched, clock = _optimiser(cfg, model, total_steps, steps_per_epoch)
    amp_dtype, scaler = _precision(cfg, dev)
    loss_fn = build_loss(cfg)
    fwd = _Forward(D.wrap_ddp(model, dev) if W > 1 else model, cfg.compile)

    # ---- the run folder, and where a resumed run stands
    p = _Progress(epoch_loss=torch.zeros((), device=dev, dtype=dtype),
                  window_loss=torch.zeros((), device=dev, dtype=dtype))
    ckpt_path = _open_run(out_dir, main_dir, cfg, resume, p, model, opt, sched, scaler)
    save_path = ckpt_path if info.is_main else None
    log = _Log(main_dir, progress and info.is_main, total_steps, p.step)
    t_start, start_epoch = time.time(), p.epoch
    wall_s = lambda: p.wall_before + time.time() - t_start  # noqa: E731 - training time, resumed runs included
    sync_every = cfg.nan_check_every or (1 if dev.type == "cpu" else cfg.log_every)   # host syncs
    first_bad = torch.full((), -1, dtype=torch.long, device=dev)   # step of the first NaN/inf loss
    status, knn, bank, stop_now = "completed", None, len(train), False

    # ---- Algorithm 1: for each minibatch, two views, one forward pass, the loss, one update
    model.train()
    with StopSignals() as stop:
        for epoch in range(start_epoch, cfg.epochs):
            t_epoch, s0, evaluated = time.time(), (p.step_in_epoch if epoch == start_epoch else 0), False
            p.start_epoch(s0)
            perm = epoch_permutation(len(train), cfg.seed, epoch)
            rows = [perm[s * cfg.batch_size:(s + 1) * cfg.batch_size][shard.rows(rank)]
                    for s in range(s0, steps_per_epoch)]
            for s, x in zip(range(s0, steps_per_epoch), train.batches(rows, cfg, dev, train_images)):
                inp = _augment(views, x, shard, rank, cfg, p.step, dtype)
                loss = fwd.step(inp, loss_fn, opt, scaler, amp_dtype, dtype, shard, rank)
                scaler.step(opt)
                scaler.update()
                first_bad = torch.where(~torch.isfinite(loss.detach()) & (first_bad < 0), p.step, first_bad)
                p.add(loss.detach(), s)
                signalled, over_time, out_of_budget, stop_now = _stop_flags(stop, cfg, clock, wall_s(), p.step,
                                                                            W, sync_every, dev)
                sched.step()
                if p.step % sync_every == 0 or p.step % cfg.log_every == 0:
                    _check_finite(first_bad, epoch)
                if p.step % cfg.log_every == 0:
                    log({"kind": "step", "step": p.step, "epoch": epoch + (s + 1) / steps_per_epoch,
                         "loss": (D.all_mean(p.window_loss) / p.window_n).item(), "lr": sched.get_last_lr()[0],
                         "time_s": round(wall_s(), 2)})
                    p.window_loss.zero_()
                    p.window_n = 0
                if log.bar is not None:
                    log.bar.update(1)
                mid_epoch = s + 1 < steps_per_epoch
                if mid_epoch and (stop_now or (cfg.checkpoint_every and p.step % cfg.checkpoint_every == 0)):
                    _check_finite(first_bad, epoch)
                    _save(save_path, p, wall_s(), cfg, model, opt, sched, scaler)
                if mid_epoch and stop_now:
                    break
            if p.step_in_epoch == steps_per_epoch:
                # ---- end of epoch: monitor, log, checkpoint
                last = epoch + 1 == cfg.epochs or out_of_budget
                rec = {"kind": "epoch", "step": p.step, "epoch": epoch + 1,
                       "loss": (D.all_mean(p.epoch_loss) / max(1, p.epoch_n)).item(),
                       "lr": sched.get_last_lr()[0], "epoch_time_s": round(time.time() - t_epoch, 2),
                       "time_s": round(wall_s(), 2)}
                if info.is_main and (last or (cfg.knn_every and (epoch + 1) % cfg.knn_every == 0)):
                    knn, rec["knn_bank"] = _knn(model, train, test, cfg, dev, final=last)
                    rec["knn_top1"], evaluated = knn, True
                log(rec)
                p.epoch, p.step_in_epoch = epoch + 1, 0
                _check_finite(first_bad, epoch)
                _save(save_path, p, wall_s(), cfg, model, opt, sched, scaler)
                D.barrier()
                stop_now = stop_now and not last
                if out_of_budget:  # the schedule has ended at this epoch's last step
                    status = "time_budget"
                    break
            if stop_now:
                log.close()
                if signalled:
                    raise Preempted(f"received signal {stop.signal or 'on another rank'}: saved a checkpoint "
                                    f"at step {p.step} in {out_dir}; continue with --resume")
                status = "time_limit" if over_time else "time_budget"
                if info.is_main and not evaluated:  # evaluate where it stands
                    t_stop = round(wall_s(), 2)
                    knn, bank = _knn(model, train, test, cfg, dev, final=True)
                    log({"kind": "epoch", "step": p.step, "epoch": p.step / steps_per_epoch, "knn_top1": knn,
                         "knn_bank": bank, "time_s": t_stop})
                break
    log.close()
    if status == "completed" and knn is None and start_epoch == cfg.epochs and info.is_main:
        knn, bank = _knn(model, train, test, cfg, dev, final=True)  # resumed after the last checkpoint
    return _finish(cfg, main_dir, status, knn, bank, p.step, steps_per_epoch, wall_s(), data_time_s, dev, W,
                   len(train), len(test), model if out_dir is None else None, log.history)


def _open_run(out_dir: Path | None, main_dir: Path | None, cfg: Config, resume: bool, p: _Progress,
              model: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any, scaler: Any) -> Path | None:
    """Make the run folder (rank 0; the inputs are accepted by now), restore a resumed run's
    checkpoint into ``p`` and the training objects, write ``config.json``; the checkpoint's path."""
    if main_dir is not None:
        main_dir.mkdir(parents=True, exist_ok=True)
    D.barrier()
    ckpt_path = out_dir / "checkpoint.pt" if out_dir is not None else None
    if resume and ckpt_path is not None and ckpt_path.exists():
        _restore(ckpt_path, p, model, opt, sched, scaler)
    if main_dir is not None:
        if resume:  # a resumed run redoes the steps after its checkpoint (all of them if it has none)
            truncate_metrics(main_dir / "metrics.jsonl", p.step)
        write_json(main_dir / "config.json", cfg.to_dict())
    return ckpt_path


def _finish(cfg: Config, main_dir: Path | None, status: str, knn: float | None, bank: int, steps: int,
            steps_per_epoch: int, wall_s: float, data_time_s: float, dev: torch.device, world_size: int,
            n_train: int, n_test: int, model: torch.nn.Module | None, history: list[dict[str, Any]],
            ) -> dict[str, Any]:
    """The run's summary, written to ``run.json`` (with a folder) or returned with the model (without)."""
    summary: dict[str, Any] = {
        "status": status, "steps": steps, "epochs": steps / steps_per_epoch, "knn_top1": knn,
        "knn_test_images": n_test, "knn_bank": bank,
        "wall_time_s": round(wall_s, 2), "data_time_s": round(data_time_s, 2),
        "device": D.describe_device(dev), "world_size": world_size, "torch": torch.__version__,
        "python": platform.python_version(), "train_images": n_train, "test_images": n_test,
        "config": cfg.to_dict(),
    }
    if main_dir is not None:
        write_json(main_dir / "run.json", summary)
    if model is not None:
        summary["model"] = model
        summary["history"] = history
    return summary
