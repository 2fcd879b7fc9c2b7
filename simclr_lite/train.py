"""SimCLR pretraining (Algorithm 1): one config dataclass, presets, one loop.

Each step draws a batch of N images, makes two views of each with
independently sampled augmentations (:class:`~simclr_lite.augment.SimCLRAugment`,
on the training device), encodes both views in one forward pass, and
minimises NT-Xent over the 2N projections. The whole dataset is decoded
once and kept on the device as uint8, so no DataLoader workers are needed.

Every random draw is a function of ``(seed, epoch)`` (data order) or
``(seed, step, view, shard)`` (augmentations), so a run resumed from any
checkpoint continues exactly, and a run split over W processes draws the same
augmentations as one process with ``aug_shards = W``.

Book: chapter 1 (``book/01_simclr_in_one_picture.ipynb``) walks through this loop.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import math
import os
import platform
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from . import distributed as D
from .augment import SimCLRAugment
from .checkpoint import FORMAT, atomic_save, load_checkpoint, load_model_state, rng_state, set_rng_state
from .data import ImageFolderStream, load_dataset, stream_dataset
from .errors import ConfigError, SimCLRError, TrainingError
from .evaluate import extract_features, knn_accuracy
from .losses import LOSSES, check_temperature
from .models import build_simclr
from .optim import build_optimizer, scaled_lr, warmup_cosine


@dataclass
class Config:
    """Everything a pretraining run depends on. Defaults follow the paper's CIFAR-10 setup (B.9)."""
    # data
    data: str | None = None          # CIFAR-10 root or folder with train/ and test/; None: $SIMCLR_DATA or data/
    image_size: int = 32             # side of decoded images and of the views
    download: bool = False           # let torchvision download CIFAR-10 when it is not found
    skip_bad_images: bool = False    # skip (and count) unreadable images instead of failing
    loader: str = "memory"           # memory: decode once, keep uint8 on the device; stream: decode each
                                     # batch in DataLoader workers (ImageNet-size ImageFolder trees)
    workers: int = 8                 # DataLoader worker processes per rank (loader=stream)
    decode_size: int = 0             # loader=stream: side images are decoded to (0: image_size * 8/7)
    train_limit: int = 0             # use a random subset of N training images (0: all); smoke runs
    test_limit: int = 0              # use a random subset of N test images (0: all)
    # encoder f and head g (Sec. 2.1, B.9)
    arch: str = "resnet18"           # resnet10 / 18 / 34 / 50
    width: float = 1.0               # channel multiplier (Fig. 7: 1x, 2x, 4x)
    cifar_stem: bool = True          # 3x3 stride-1 first conv, no max-pool (B.9)
    stem_stride: int = 1             # stride of the CIFAR stem's conv (2 trades accuracy for 4x speed)
    head: str = "nonlinear"          # none / linear / nonlinear (Fig. 8)
    proj_dim: int = 128              # output size of g
    proj_hidden: int = 0             # hidden width of the nonlinear g (0: the size of h, as the paper)
    # augmentation (Appendix A)
    strength: float = 0.5            # colour distortion strength s (0.5 for CIFAR-10, 1.0 for ImageNet)
    blur: bool = False               # Gaussian blur (ImageNet only)
    min_scale: float = 0.08          # smallest crop area fraction
    # loss (eq. 1, Table 2)
    loss: str = "nt_xent"            # nt_xent / nt_logistic / margin_triplet
    temperature: float = 0.5         # tau (0.5 for CIFAR-10 at long training, Table 5 / B.9)
    normalize: bool = True           # l2-normalise z in nt_xent / nt_logistic (Table 5 compares without;
                                     # margin_triplet always normalises: its margin is in cosine units)
    semi_hard: bool = False          # semi-hard negative mining for nt_logistic / margin_triplet (Table 4)
    margin: float = 0.5              # margin m of margin_triplet (Table 2)
    # optimisation (Sec. 2.2, B.1)
    epochs: int = 500
    batch_size: int = 512            # global batch, split evenly over processes
    optimizer: str = "lars"          # lars / sgd / adam
    lr: float = 1.0                  # base learning rate, scaled by lr_scaling
    lr_scaling: str = "linear"       # linear: lr x B/256; sqrt: lr x sqrt(B); none
    weight_decay: float = 1e-6
    momentum: float = 0.9
    warmup_epochs: float = 10        # linear warmup, then cosine decay per step
    # monitoring
    knn_every: int = 1               # kNN monitor every N epochs (0: only after the last epoch)
    knn_k: int = 200
    knn_t: float = 0.1
    knn_bank: int = 0                # training images in the monitor's bank between epochs (0: all)
    log_every: int = 10              # steps between metric lines
    # system
    seed: int = 0
    device: str = "auto"             # auto / cpu / cuda / cuda:N
    amp: str = "auto"                # auto (bf16 on GPU) / off / bf16 / fp16
    dtype: str = "float32"           # float32 / float64: weights and activations (float64 makes runs with
                                     # 1 and 2 processes agree to ~1e-12 on any CPU: exactness checks)
    channels_last: bool = True
    compile: bool = False            # torch.compile the model
    sync_bn: str = "auto"            # auto (on when world size > 1) / on / off
    aug_shards: int = 0              # draw augmentations in this many equal parts of the global batch; 0: auto,
                                     # 8 when 8 splits evenly over the processes and the batch (1, 2, 4 or 8
                                     # processes, batch a multiple of 8), so the views do not depend on the
                                     # process count; else one part per process
    threads: int = 0                 # CPU threads for torch (0: PyTorch's default)
    checkpoint_every: int = 0        # also checkpoint every N steps (0: at each epoch's end only)
    time_limit: float = 0            # stop cleanly after this many minutes (0: no limit)
    time_budget: float = 0           # minutes: the cosine schedule ends (lr 0) when they are up, or after
                                     # `epochs`, whichever comes first (0: by epochs alone; not reproducible
                                     # step for step, as the schedule then follows the machine's clock)
    nan_check_every: int = 0         # steps between checks for a NaN/inf loss (0: 1 on CPU, log_every on GPU)

    def validate(self) -> None:
        """Raise :class:`ConfigError` with a one-line fix for values that cannot work."""
        if self.batch_size < 2:
            raise ConfigError(f"batch size must be at least 2 (negatives come from the other images), "
                              f"got {self.batch_size}; use --batch-size 256 or more")
        check_temperature(self.temperature)
        if not (self.lr >= 0 and math.isfinite(self.lr)):
            raise ConfigError(f"learning rate must be a finite number >= 0, got {self.lr}")
        if self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs}")
        if not 0 <= self.strength <= 2.5:
            raise ConfigError(f"colour strength must be in [0, 2.5], got {self.strength}; the paper uses 0.5 "
                              f"for CIFAR-10, 1.0 for ImageNet")
        for name in ("image_size", "proj_dim", "stem_stride", "log_every", "knn_k"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("train_limit", "test_limit", "warmup_epochs", "workers", "decode_size", "weight_decay",
                     "momentum", "knn_every", "knn_bank", "threads", "proj_hidden", "checkpoint_every",
                     "time_limit", "time_budget", "nan_check_every"):
            if not getattr(self, name) >= 0:  # also refuses NaN
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if not self.margin >= 0:
            raise ConfigError(f"--margin must be >= 0, got {self.margin}")
        if not self.knn_t > 0:
            raise ConfigError(f"--knn-t must be > 0, got {self.knn_t}")
        if not 0 < self.min_scale <= 1:
            raise ConfigError(f"min crop scale must be in (0, 1], got {self.min_scale}")
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown loss {self.loss!r}; choose one of {sorted(LOSSES)}")
        if self.dtype == "float64" and self.amp in ("bf16", "fp16"):
            raise ConfigError(f"--dtype float64 cannot run under --amp {self.amp}; use --amp off")
        if self.loader == "stream" and self.decode_size and self.decode_size < self.image_size:
            raise ConfigError(f"--decode-size {self.decode_size} is smaller than --image-size {self.image_size}")
        for name, allowed in (("amp", ("auto", "off", "bf16", "fp16")), ("sync_bn", ("auto", "on", "off")),
                              ("loader", ("memory", "stream")), ("dtype", ("float32", "float64")),
                              ("lr_scaling", ("linear", "sqrt", "none")),
                              ("optimizer", ("lars", "sgd", "adam")),
                              ("head", ("none", "linear", "nonlinear"))):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"--{name.replace('_', '-')} must be one of {', '.join(allowed)}, "
                                  f"got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Presets: named starting points; any field can be overridden from the CLI.
PRESETS: dict[str, dict[str, Any]] = {
    # CI: seconds on a CPU, on 2,048 training images.
    "cifar10-smoke": dict(arch="resnet10", width=0.125, stem_stride=2, epochs=2, batch_size=128,
                          lr=1.0, warmup_epochs=0, train_limit=2048, test_limit=512, knn_every=1,
                          log_every=4),
    # A quarter-width ResNet-10 with a 2048-wide head, trained for as many epochs as 14.5 minutes allow
    # (budgeted training: the schedule ends with the time; 16.5 epochs on 2 CPU cores in the measured
    # run, 55.3% kNN). README, "Real data", has what it reaches and the runs that chose it.
    "cifar10-cpu": dict(arch="resnet10", width=0.25, stem_stride=2, proj_hidden=2048, epochs=40,
                        time_budget=14.5, batch_size=256, optimizer="lars", lr=1.5, temperature=0.2,
                        min_scale=0.2, warmup_epochs=0.5, compile=True, knn_every=0, knn_bank=10000,
                        log_every=20),
    # The paper's CIFAR-10 settings on one GPU: ResNet-18, CIFAR stem, LARS, batch 512.
    "cifar10-gpu": dict(arch="resnet18", width=1.0, stem_stride=1, epochs=500, batch_size=512, lr=1.0,
                        temperature=0.5, warmup_epochs=10, knn_every=10, log_every=50),
    # ImageNet, Sec. 4 defaults: ResNet-50, 224 px, s = 1 with blur, batch 4096, LARS 4.8, 100 epochs.
    # Images are decoded (shorter side 256, centre 256x256) by 10 DataLoader workers per GPU, then
    # cropped and augmented on the GPU.
    "imagenet-r50": dict(arch="resnet50", width=1.0, cifar_stem=False, image_size=224, strength=1.0,
                         loader="stream", workers=10,
                         blur=True, epochs=100, batch_size=4096, lr=0.3, lr_scaling="linear",
                         temperature=0.1, warmup_epochs=10, knn_every=10, knn_bank=100000,
                         log_every=50),
    # ImageNet-100-style subsets (a class subset as an ImageFolder tree): ResNet-50, 400 epochs.
    "imagenet100-r50": dict(arch="resnet50", width=1.0, cifar_stem=False, image_size=224, strength=1.0,
                            loader="stream", workers=10,
                            blur=True, epochs=400, batch_size=512, lr=0.3, temperature=0.2,
                            warmup_epochs=10, knn_every=20, log_every=50),
    # The same at 128 px with ResNet-18: a subset run for a single GPU.
    "imagenet100-r18": dict(arch="resnet18", width=1.0, cifar_stem=False, image_size=128, strength=1.0,
                            loader="stream", workers=10,
                            blur=True, epochs=200, batch_size=512, lr=0.3, temperature=0.2,
                            warmup_epochs=10, knn_every=20, log_every=50),
}


def preset(name: str, **overrides: Any) -> Config:
    """A :class:`Config` from a preset name plus field overrides.

    Explicit ``epochs`` without ``time_budget`` means those epochs, all of them:
    the preset's time budget (``cifar10-cpu``) is then off.
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(Config)}
    bad = set(overrides) - fields
    if bad:
        raise ConfigError(f"unknown config field(s) {sorted(bad)}")
    if "epochs" in overrides and "time_budget" not in overrides:
        overrides = {**overrides, "time_budget": 0.0}
    return Config(**{**PRESETS[name], **overrides})


def build_loss(cfg: Config) -> Callable[..., torch.Tensor]:
    """The loss ``cfg.loss`` from :data:`~simclr_lite.losses.LOSSES`, with the Config fields it takes
    (those named like its parameters: temperature, normalize, margin, semi_hard) filled in."""
    fn = LOSSES[cfg.loss]
    params = inspect.signature(fn).parameters
    return functools.partial(fn, **{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
                                    if f.name in params})


def build_model(cfg: Config) -> torch.nn.Module:
    """The :class:`~simclr_lite.models.SimCLR` network (f and g) that ``cfg`` describes, freshly initialised."""
    return build_simclr(cfg.arch, cfg.width, cfg.cifar_stem, cfg.head, cfg.proj_dim, cfg.stem_stride,
                        cfg.proj_hidden)


# Fields that define what a run computes: resuming with a different value would mix two runs.
IDENTITY_FIELDS = ("arch", "width", "cifar_stem", "stem_stride", "head", "proj_dim", "proj_hidden",
                   "image_size", "strength", "blur", "min_scale", "loss", "temperature", "normalize", "semi_hard",
                   "margin", "batch_size", "optimizer",
                   "lr", "lr_scaling", "weight_decay", "momentum", "warmup_epochs", "seed",
                   "train_limit", "aug_shards", "time_budget")


AUTO_AUG_SHARDS = 8   # aug_shards=0: the augmentation parts of the global batch, whatever the process count


def auto_aug_shards(batch_size: int, world_size: int) -> int:
    """``aug_shards=0``: :data:`AUTO_AUG_SHARDS` parts when they split evenly over the processes and the
    batch, so that 1, 2, 4 and 8 processes draw the same views; else one part per process."""
    if AUTO_AUG_SHARDS % world_size == 0 and batch_size % AUTO_AUG_SHARDS == 0:
        return AUTO_AUG_SHARDS
    return world_size


def _seed_for(*parts: int) -> int:
    """A 63-bit seed from integers (a fixed hash, the same on every platform)."""
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (int(p) & 0xFFFFFFFFFFFF)) * 1099511628211) % (1 << 63)
    return h


def _generator(device: torch.device, *parts: int) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(_seed_for(*parts))
    return g


def subset_indices(n: int, k: int, seed: int) -> torch.Tensor:
    """A seeded random subset of ``k`` of ``n`` indices, in increasing order (for train/test limits)."""
    return torch.randperm(n, generator=_generator(torch.device("cpu"), seed, 11))[:k].sort().values


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The data order of an epoch: the same on every rank, and after a resume."""
    return torch.randperm(n, generator=_generator(torch.device("cpu"), seed, epoch, 7))


class _Stop:
    """Set by SIGTERM / SIGUSR1 (SLURM's preemption signals): checkpoint, then exit."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "_Stop":
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


class Preempted(SimCLRError):
    """A preemption signal arrived; a checkpoint was saved."""


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines written after ``step`` (the part of a killed run that is redone)."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(ln + "\n" for ln in keep))
    os.replace(tmp, path)


def check_out_dir(out: Path, cfg: Config, resume: bool) -> None:
    """Refuse to write over a different run; require --resume to continue one."""
    cfg_path = out / "config.json"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder; choose another --out")
    if resume:
        if not (out / "checkpoint.pt").exists() and not cfg_path.exists():
            raise ConfigError(f"--resume: {out} holds no checkpoint.pt; start the run without --resume")
        if cfg_path.exists():
            saved = json.loads(cfg_path.read_text())
            diff = [k for k in IDENTITY_FIELDS if k in saved and saved[k] != getattr(cfg, k)]
            if diff:
                k = diff[0]
                raise ConfigError(f"--resume: {out} was run with {k}={saved[k]!r}, not {getattr(cfg, k)!r}; "
                                  f"resume with the same settings or use another --out")
        return
    if cfg_path.exists() or (out / "checkpoint.pt").exists():
        raise ConfigError(f"{out} already holds a run; pass --resume to continue it or choose another --out")


def pretrain(cfg: Config, out: str | os.PathLike | None = None, resume: bool = False,
             progress: bool = True, data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
             augment: Callable[..., torch.Tensor] | Sequence[Callable[..., torch.Tensor]] | None = None,
             ) -> dict[str, Any]:
    """Run SimCLR pretraining; returns the run summary (also written to ``out/run.json``).

    ``out`` (optional) receives ``config.json``, ``metrics.jsonl`` (one line per
    ``log_every`` steps and per epoch), ``checkpoint.pt`` (each epoch, atomic)
    and ``run.json`` (device, versions, wall time, final kNN top-1). ``data``
    may pass ``(train_x, train_y, test_x, test_y)`` directly (uint8 tensors),
    as the book's chapters do. With ``out=None`` nothing is written and the
    summary includes the trained ``model`` and the metric ``history``.
    ``augment`` replaces the config's :class:`SimCLRAugment` (the book's
    augmentation experiments, Fig. 5): one callable ``f(images, generator=g)``
    for both views, or a pair, one per view (e.g. identity for one branch).
    """
    cfg.validate()
    info = D.setup(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    W = info.world_size
    if cfg.batch_size % W:
        raise ConfigError(f"global batch size {cfg.batch_size} does not split evenly over {W} processes; "
                          f"use a multiple of {W}")
    shards = cfg.aug_shards or auto_aug_shards(cfg.batch_size, W)
    if shards % W or cfg.batch_size % shards:
        raise ConfigError(f"--aug-shards {shards} must be a multiple of the world size {W} and divide "
                          f"the batch size {cfg.batch_size}")
    out_dir = Path(out) if out is not None else None
    if out_dir is not None and info.is_main:
        check_out_dir(out_dir, cfg, resume)    # reads only: the folder is made once the inputs are accepted
    dev = info.device
    t_data = time.time()

    # ---- data: decoded once and kept on the device as uint8 (memory), or decoded per batch by
    # DataLoader workers (stream); either way augmented on the device
    stream = cfg.loader == "stream"
    if stream:
        if data is not None:
            raise ConfigError("pretrain(data=...) passes decoded tensors; it cannot be combined with loader=stream")
        train_ds, test_ds = stream_datasets(cfg)
        train_x, train_y = torch.arange(len(train_ds)), train_ds.labels   # indices into the datasets
        test_x, test_y = torch.arange(len(test_ds)), test_ds.labels
    elif data is None:
        train_x, train_y, classes = load_dataset(cfg.data, True, size=cfg.image_size, download=cfg.download,
                                                 skip_bad=cfg.skip_bad_images)
        test_x, test_y, _ = load_dataset(cfg.data, False, size=cfg.image_size, download=cfg.download,
                                         skip_bad=cfg.skip_bad_images, classes=classes)
    else:
        train_x, train_y, test_x, test_y = data
    if cfg.train_limit and cfg.train_limit < len(train_x):
        keep = subset_indices(len(train_x), cfg.train_limit, cfg.seed)
        train_x, train_y = train_x[keep], train_y[keep]
    if cfg.test_limit and cfg.test_limit < len(test_x):
        keep = subset_indices(len(test_x), cfg.test_limit, cfg.seed + 1)
        test_x, test_y = test_x[keep], test_y[keep]
    n_train = len(train_x)
    steps_per_epoch = n_train // cfg.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(f"batch size {cfg.batch_size} is larger than the {n_train} training images; "
                          f"use --batch-size {max(2, n_train)} or less")
    train_dev = train_x.to(dev) if not stream else None
    total_steps = cfg.epochs * steps_per_epoch
    data_time_s = time.time() - t_data

    # ---- model, optimiser, schedule
    torch.manual_seed(cfg.seed)
    model = build_model(cfg)
    use_sync_bn = cfg.sync_bn == "on" or (cfg.sync_bn == "auto" and W > 1)
    if use_sync_bn and W > 1:
        model = D.convert_global_bn(model, dev)
    param_dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
    model = model.to(dev, dtype=param_dtype)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    peak_lr = scaled_lr(cfg.lr, cfg.batch_size, cfg.lr_scaling)
    opt = build_optimizer(model, cfg.optimizer, peak_lr, cfg.weight_decay, cfg.momentum)
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    # time_budget: the schedule's clock is the larger of steps done / total and wall time / budget
    budget_s = cfg.time_budget * 60
    clock = {"time_fraction": 0.0}
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, total_steps, warmup, at_least=clock["time_fraction"]))
    amp = cfg.amp if cfg.amp != "auto" else ("bf16" if dev.type == "cuda" and cfg.dtype == "float32" else "off")
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    scaler = torch.amp.GradScaler(dev.type, enabled=amp == "fp16")
    if augment is None:
        augment = SimCLRAugment(cfg.image_size, strength=cfg.strength, blur=cfg.blur, scale=(cfg.min_scale, 1.0))
    view_fns = tuple(augment) if isinstance(augment, Sequence) else (augment, augment)
    if len(view_fns) != 2 or not all(callable(f) for f in view_fns):
        raise ConfigError("augment must be one callable or a pair of callables (one per view)")

    # ---- inputs accepted: make the run folder (nothing is written before this point)
    if out_dir is not None and info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    D.barrier()
    if resume and out_dir is not None and not (out_dir / "checkpoint.pt").exists():
        resume = False  # killed before its first checkpoint: nothing to load, start again from step 0
        if info.is_main:
            _truncate_metrics(out_dir / "metrics.jsonl", 0)
    t_start = time.time()

    # ---- resume
    start_epoch, start_step_in_epoch, step, wall_before = 0, 0, 0, 0.0
    if resume:
        ckpt = load_checkpoint(out_dir / "checkpoint.pt")  # type: ignore[operator]
        load_model_state(model, ckpt["model"], str(out_dir / "checkpoint.pt"))
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        start_epoch, start_step_in_epoch, step = ckpt["epoch"], ckpt["step_in_epoch"], ckpt["step"]
        wall_before = float(ckpt.get("wall_time_s", 0.0))
        if info.is_main:
            _truncate_metrics(out_dir / "metrics.jsonl", step)  # type: ignore[operator]
    if out_dir is not None and info.is_main:
        _write_json(out_dir / "config.json", cfg.to_dict())

    def wall_s() -> float:
        """Training wall time so far, including the runs this one resumes."""
        return wall_before + time.time() - t_start

    net: torch.nn.Module = model
    if W > 1:
        net = D.wrap_ddp(model, dev)
    fwd = torch.compile(net) if cfg.compile else net
    compile_pending = cfg.compile

    loss_fn = build_loss(cfg)

    def forward_backward(f: torch.nn.Module, inp: torch.Tensor) -> torch.Tensor:
        """Both views through f and g in one pass, NT-Xent over the (global) batch, gradients."""
        with torch.autocast(dev.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            _, z = f(inp)
        z_a, z_b = z.to(param_dtype).chunk(2)        # bf16/fp16 projections: the loss runs in float32
        if W > 1:  # every rank's anchors meet the negatives of the global batch (Sec. 2.2), for every loss
            loss = loss_fn(z_a, z_b, z_a_all=D.gather(z_a), z_b_all=D.gather(z_b), offset=info.rank * b_local)
        else:
            loss = loss_fn(z_a, z_b)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        return loss
    b_local = cfg.batch_size // W
    shards_local = shards // W
    b_shard = cfg.batch_size // shards

    epoch_loss, epoch_n = torch.zeros((), device=dev, dtype=param_dtype), 0       # running mean of the epoch's loss
    loss_sum, n_loss = torch.zeros((), device=dev, dtype=param_dtype), 0          # running mean since the last log line
    if resume and start_step_in_epoch:
        epoch_loss += ckpt["epoch_loss"][0]
        epoch_n = int(ckpt["epoch_loss"][1])
        loss_sum += ckpt["window_loss"][0]
        n_loss = int(ckpt["window_loss"][1])

    def save(epoch: int, step_in_epoch: int) -> None:
        check_finite(epoch)
        # running losses as means over ranks (every rank calls save): a resumed run logs the global loss
        e_loss, w_loss = float(D.all_mean(epoch_loss)), float(D.all_mean(loss_sum))
        if out_dir is None or not info.is_main:
            return
        atomic_save({"format": FORMAT, "model": model.state_dict(), "optimizer": opt.state_dict(),
                     "scheduler": sched.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch,
                     "step_in_epoch": step_in_epoch, "step": step, "rng": rng_state(),
                     "config": json.dumps(cfg.to_dict()), "epoch_loss": [e_loss, epoch_n],
                     "window_loss": [w_loss, n_loss],
                     "wall_time_s": wall_s()}, out_dir / "checkpoint.pt")

    def monitor(final: bool) -> float:
        if final or not cfg.knn_bank or cfg.knn_bank >= n_train:
            bank = torch.arange(n_train)
        else:  # a random subset: datasets are often stored class by class
            bank = subset_indices(n_train, cfg.knn_bank, cfg.seed + 2)
        if stream:
            feats_tr = _stream_features(model.encoder, train_ds, train_x[bank], cfg, dev)
            feats_te = _stream_features(model.encoder, test_ds, test_x, cfg, dev)
        else:
            feats_tr = extract_features(model.encoder, train_x[bank], device=dev)
            feats_te = extract_features(model.encoder, test_x, device=dev)
        return knn_accuracy(feats_tr, train_y[bank], feats_te, test_y, cfg.knn_k, cfg.knn_t)

    def batches(epoch: int, s0: int) -> Iterator[tuple[int, torch.Tensor]]:
        """This rank's images of each step of an epoch (from step ``s0``), on the device, uint8."""
        perm = epoch_permutation(n_train, cfg.seed, epoch)
        rows = [perm[s * cfg.batch_size + info.rank * b_local:s * cfg.batch_size + (info.rank + 1) * b_local]
                for s in range(s0, steps_per_epoch)]
        if not stream:
            for s, local in zip(range(s0, steps_per_epoch), rows):
                yield s, train_dev[local.to(dev)]
            return
        loader = torch.utils.data.DataLoader(
            train_ds, batch_sampler=[train_x[r].tolist() for r in rows], num_workers=cfg.workers,
            pin_memory=dev.type == "cuda", prefetch_factor=4 if cfg.workers else None)
        for s, (x, _) in zip(range(s0, steps_per_epoch), loader):
            yield s, x.to(dev, non_blocking=True)

    metrics_path = out_dir / "metrics.jsonl" if out_dir is not None else None
    history: list[dict[str, Any]] = []

    def log(rec: dict[str, Any]) -> None:
        history.append(rec)
        if metrics_path is not None and info.is_main:
            _append_jsonl(metrics_path, rec)

    bar = None
    if progress and info.is_main:
        from tqdm.auto import tqdm
        bar = tqdm(total=total_steps, initial=step, desc="pretrain", unit="step", dynamic_ncols=True)
    first_bad = torch.full((), -1, dtype=torch.long, device=dev)
    nan_every = cfg.nan_check_every or (1 if dev.type == "cpu" else cfg.log_every)  # a check syncs the GPU

    def check_finite(epoch: int) -> None:
        """Stop at the first non-finite loss, before anything is saved from the broken weights."""
        fb = int(first_bad)
        if fb >= 0:
            if bar is not None:
                bar.close()
            raise TrainingError(
                f"loss became NaN/inf at step {fb} (epoch {epoch}); the last good checkpoint is kept. "
                f"Usual causes: learning rate too high (--lr), temperature too low (--temperature), "
                f"or fp16 overflow (--amp bf16 or off)")
    status, knn, signalled, stopped_mid_epoch = "completed", None, False, False
    model.train()
    with _Stop() as stop:
        for epoch in range(start_epoch, cfg.epochs):
            t_epoch = time.time()
            s0 = start_step_in_epoch if epoch == start_epoch else 0
            if s0 == 0:
                epoch_loss.zero_()
                epoch_n = 0
            for s, x in batches(epoch, s0):
                inp = torch.cat([view_fns[v](x[j * b_shard:(j + 1) * b_shard],
                                             generator=_generator(dev, cfg.seed, step, v, info.rank * shards_local + j))
                                 for v in range(2) for j in range(shards_local)])   # view 1's shards, then view 2's
                inp = inp.to(param_dtype)
                if cfg.channels_last:
                    inp = inp.contiguous(memory_format=torch.channels_last)
                if compile_pending:  # the first compiled step: fall back to eager if compilation fails
                    try:
                        loss = forward_backward(fwd, inp)
                    except Exception as e:  # noqa: BLE001 - e.g. no C++ compiler for inductor on a CPU
                        print(f"warning: torch.compile failed ({type(e).__name__}: {str(e).strip()[:100]}); "
                              f"training without it", file=sys.stderr)
                        fwd = net
                        loss = forward_backward(fwd, inp)
                    compile_pending = False
                else:
                    loss = forward_backward(fwd, inp)
                bad = ~torch.isfinite(loss.detach())
                first_bad = torch.where(bad & (first_bad < 0), torch.full_like(first_bad, step), first_bad)
                scaler.step(opt)
                scaler.update()
                # one collective per step: a preemption signal, the time limit or the time budget on
                # any rank stops every rank at the same step, and all ranks share the budget's clock
                elapsed = wall_s()
                signalled, over_time, elapsed = D.all_max(
                    stop.signal is not None, bool(cfg.time_limit and elapsed > cfg.time_limit * 60),
                    elapsed if budget_s else 0.0, device=dev)
                clock["time_fraction"] = elapsed / budget_s if budget_s else 0.0
                out_of_budget = bool(budget_s) and elapsed >= budget_s
                sched.step()
                step += 1
                loss_sum += loss.detach()
                epoch_loss += loss.detach()
                n_loss += 1
                epoch_n += 1
                if step % nan_every == 0 or step % cfg.log_every == 0:
                    check_finite(epoch)
                if step % cfg.log_every == 0:
                    rec = {"kind": "step", "step": step, "epoch": epoch + (s + 1) / steps_per_epoch,
                           "loss": (D.all_mean(loss_sum) / n_loss).item(), "lr": sched.get_last_lr()[0],
                           "time_s": round(wall_s(), 2)}
                    log(rec)
                    loss_sum.zero_()
                    n_loss = 0
                    if bar is not None:
                        bar.set_postfix(loss=f"{rec['loss']:.3f}", lr=f"{rec['lr']:.3g}")
                if bar is not None:
                    bar.update(1)
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and s + 1 < steps_per_epoch:
                    save(epoch, s + 1)
                stop_now = signalled or over_time or out_of_budget
                if stop_now and s + 1 < steps_per_epoch:
                    save(epoch, s + 1)
                    if bar is not None:
                        bar.close()
                    if signalled:
                        raise Preempted(f"received signal {stop.signal or 'on another rank'}: saved a checkpoint "
                                        f"at step {step} in {out_dir}; continue with --resume")
                    status = "time_limit" if over_time else "time_budget"
                    stopped_mid_epoch = True
                    break
            else:
                # ---- end of epoch: monitor, log, checkpoint
                last = epoch + 1 == cfg.epochs or out_of_budget
                rec = {"kind": "epoch", "step": step, "epoch": epoch + 1,
                       "loss": (D.all_mean(epoch_loss) / max(1, epoch_n)).item(),
                       "lr": sched.get_last_lr()[0], "epoch_time_s": round(time.time() - t_epoch, 2),
                       "time_s": round(wall_s(), 2)}
                if info.is_main and (last or (cfg.knn_every and (epoch + 1) % cfg.knn_every == 0)):
                    knn = monitor(final=last)
                    rec["knn_top1"] = knn
                    rec["knn_bank"] = n_train if last or not cfg.knn_bank else min(cfg.knn_bank, n_train)
                    if bar is not None:
                        bar.write(f"epoch {epoch + 1}: loss {rec['loss']:.4f}  kNN top-1 {knn:.4f}")
                log(rec)
                save(epoch + 1, 0)
                D.barrier()
                if signalled and not last:
                    if bar is not None:
                        bar.close()
                    raise Preempted(f"received signal {stop.signal or 'on another rank'}: saved a checkpoint "
                                    f"at step {step} in {out_dir}; continue with --resume")
                if out_of_budget:  # the schedule has ended at this epoch's last step
                    status = "time_budget"
                    break
                continue
            break
    if bar is not None:
        bar.close()
    if status == "completed" and knn is None and start_epoch == cfg.epochs and info.is_main:
        knn = monitor(final=True)  # resumed after the last checkpoint (killed before run.json was written)
    if stopped_mid_epoch and info.is_main:
        t_stop = round(wall_s(), 2)   # training time, like the epoch lines
        knn = monitor(final=True)
        log({"kind": "epoch", "step": step, "epoch": step / steps_per_epoch, "knn_top1": knn,
             "knn_bank": n_train, "time_s": t_stop})
    summary = {
        "status": status, "steps": step, "epochs": step / steps_per_epoch, "knn_top1": knn,
        "wall_time_s": round(wall_s(), 2), "data_time_s": round(data_time_s, 2),
        "knn_test_images": len(test_x), "knn_bank": n_train,
        "device": describe_device(dev), "world_size": W, "torch": torch.__version__,
        "python": platform.python_version(), "train_images": n_train, "test_images": len(test_x),
        "config": cfg.to_dict(),
    }
    if out_dir is not None and info.is_main:
        _write_json(out_dir / "run.json", summary)
    if out_dir is None:
        summary["model"] = model
        summary["history"] = history
    return summary


def stream_datasets(cfg: Config, data: str | os.PathLike | None = None,
                    ) -> tuple[ImageFolderStream, ImageFolderStream]:
    """The train and test splits of ``data`` (default ``cfg.data``) as read by ``loader=stream``."""
    decode = cfg.decode_size or round(cfg.image_size * 8 / 7)
    root = cfg.data if data is None else data
    train_ds = stream_dataset(root, True, decode, skip_bad=cfg.skip_bad_images)
    test_ds = stream_dataset(root, False, decode, skip_bad=cfg.skip_bad_images, classes=train_ds.classes)
    return train_ds, test_ds


@torch.no_grad()
def _stream_features(encoder: torch.nn.Module, ds: ImageFolderStream, index: torch.Tensor, cfg: Config,
                     dev: torch.device) -> torch.Tensor:
    """h of the images ``index`` of a streamed dataset, centre-cropped to the training size."""
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, index.tolist()), batch_size=256,
                                         num_workers=cfg.workers, pin_memory=dev.type == "cuda")
    out = []
    for x, _ in loader:
        o = (x.shape[-1] - cfg.image_size) // 2
        out.append(extract_features(encoder, x[..., o:o + cfg.image_size, o:o + cfg.image_size], device=dev))
    return torch.cat(out)


def describe_device(dev: torch.device) -> str:
    """A human-readable name of the device, for results files."""
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def load_run(out: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, Config]:
    """The trained SimCLR model and config of a run folder (checkpoint loaded with weights_only)."""
    out = Path(out)
    ckpt = load_checkpoint(out / "checkpoint.pt")
    cfg = Config(**json.loads(ckpt["config"]))
    model = build_model(cfg)
    state = {k.replace("module.", "", 1) if k.startswith("module.") else k: v for k, v in ckpt["model"].items()}
    load_model_state(model, state, str(out / "checkpoint.pt"))
    return model.to(device).eval(), cfg
