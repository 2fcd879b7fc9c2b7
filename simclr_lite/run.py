"""The run folder that ``pretrain --out`` writes, and reading it back.

A run folder holds ``config.json`` (the :class:`~simclr_lite.config.Config`),
``metrics.jsonl`` (one line per ``log_every`` steps and per epoch),
``checkpoint.pt`` (see :mod:`simclr_lite.checkpoint`) and ``run.json`` (the
summary: device, versions, data-loading and training time, final kNN).
Every file is replaced atomically; a resumed run drops the metric lines that
it is about to redo. :func:`load_run` gives back the trained network.

A run is one trajectory. :class:`RunFolder` refuses, in one line and before
anything is written, to let a resumed run mix two: another setting of
:data:`~simclr_lite.config.IDENTITY_FIELDS`, other training images (their
fingerprint, not their path), more epochs without ``extend``, or a second
process writing the same folder (a lock, held while a process writes it).
A finished run's results are never overwritten.

Book: chapter 7 (``book/07_scaling_up.ipynb``) and the Faults and recovery page.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from .checkpoint import atomic_write, load_checkpoint, load_model_state
from .config import IDENTITY_FIELDS, Config, build_model
from .errors import ConfigError

FINISHED = ("completed", "time_budget")   # run.json statuses of a run whose schedule has ended


def write_json(path: Path, obj: Any, fix: str = "free disk space and try again") -> None:
    """``obj`` as indented JSON, atomically (:func:`~simclr_lite.checkpoint.atomic_write`)."""
    text = (json.dumps(obj, indent=2) + "\n").encode()
    atomic_write(path, lambda fh: fh.write(text), fix)


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def read_json(path: Path) -> Any:
    """A JSON file, or a one-line :class:`ConfigError` naming it when it cannot be read."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"{path} is unreadable ({type(e).__name__}: {str(e)[:80]}); "
                          f"restore it or point at another run") from None


def read_metrics(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The records of a ``metrics.jsonl`` and how many of its lines were unreadable (a line cut
    short by a kill, or damaged); the unreadable ones are left out."""
    rows, bad = [], 0
    for ln in path.read_text(errors="replace").splitlines() if path.exists() else []:
        if not ln.strip():
            continue
        try:
            rec = json.loads(ln)
        except ValueError:
            bad += 1
            continue
        if isinstance(rec, dict):
            rows.append(rec)
        else:
            bad += 1
    return rows, bad


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines written after ``step`` (the part of a killed run that is redone), and
    unreadable lines (one a kill cut short)."""
    if not path.exists():
        return
    rows, _ = read_metrics(path)
    text = "".join(json.dumps(r) + "\n" for r in rows if r.get("step", 0) <= step).encode()
    atomic_write(path, lambda fh: fh.write(text), "free disk space and resume again")


def writer_pid(folder: str | os.PathLike) -> int | None:
    """The process id of a live process writing ``folder`` (it holds the folder's lock), else None."""
    path = Path(folder) / ".lock"
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        return None
    if not path.is_file():
        return None
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            text = fh.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None


class RunFolder:
    """The run folder ``out`` of one pretraining run (None: nothing is written).

    ``writer``: this process writes it (rank 0 under torchrun); every rank reads the checkpoint.
    """

    def __init__(self, out: str | os.PathLike | None, writer: bool = True) -> None:
        self.path = Path(out) if out is not None else None
        self.writer = writer and self.path is not None
        self._lock: Any = None
        self._saved: dict[str, Any] = {}     # the config.json of the run that resume continues

    @property
    def checkpoint(self) -> Path | None:
        return self.path / "checkpoint.pt" if self.path is not None else None

    def has_checkpoint(self) -> bool:
        return self.checkpoint is not None and self.checkpoint.exists()

    def fix(self) -> str:
        """What to do after a write failed: continue the run if it has a checkpoint, else start again."""
        if self.has_checkpoint():
            return "free disk space, then continue with --resume (the last checkpoint is kept)"
        return "free disk space, then start the run again (no checkpoint was written)"

    def check(self, cfg: Config, resume: bool, extend: bool) -> None:
        """Refuse, before anything is written, what would overwrite a run or mix two. Reads only."""
        out = self.path
        if out is None:
            if resume or extend:
                raise ConfigError("resume/extend need a run folder (out=...)")
            return
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} is a file, not a folder; choose another --out")
        if extend and not resume:
            raise ConfigError("--extend continues a run: use it with --resume")
        pid = writer_pid(out) if self.writer and out.is_dir() else None   # (rank 0 may hold it already)
        if pid is not None:
            raise ConfigError(f"{out} is being written by another process (pid {pid}); wait for it to end "
                              f"or choose another --out")
        cfg_path = out / "config.json"
        if not resume:
            if cfg_path.exists() or (out / "checkpoint.pt").exists():
                raise ConfigError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
            return
        if not cfg_path.exists():
            raise ConfigError(f"--resume: {out} holds no run (no config.json); start the run without --resume")
        saved = self._saved = read_json(cfg_path)
        Config.from_dict(saved, str(cfg_path))
        diff = [k for k in IDENTITY_FIELDS if k in saved and saved[k] != getattr(cfg, k)]
        if diff:
            k = diff[0]
            raise ConfigError(f"--resume: {out} was run with {k}={saved[k]!r}, not {getattr(cfg, k)!r}; "
                              f"resume with the same settings or use another --out")
        planned = saved.get("epochs", cfg.epochs)
        if cfg.epochs < planned:
            raise ConfigError(f"--resume: {out} is planned for {planned} epochs; a run cannot be shortened "
                              f"(--epochs {cfg.epochs}); resume without --epochs or use another --out")
        if cfg.epochs > planned and not extend:
            raise ConfigError(f"--resume: {out} is planned for {planned} epochs, not {cfg.epochs}; to train it "
                              f"further pass --extend (the schedule is re-planned for {cfg.epochs} epochs from "
                              f"where the run stands, and config.json records it), or use another --out")
        if extend and cfg.epochs == planned:
            raise ConfigError(f"--extend: {out} is already planned for {planned} epochs; "
                              f"pass a larger --epochs")

    def planned_epochs(self) -> int:
        """The epochs the resumed run was planned for (its config.json, read by :meth:`check`)."""
        return int(self._saved.get("epochs", 0))

    def open(self, resume: bool) -> dict[str, Any] | None:
        """Make the folder and take its lock (the writer), and read a resumed run's checkpoint (every
        rank); the checkpoint, or None when the run starts from step 0."""
        if self.writer:
            self.path.mkdir(parents=True, exist_ok=True)
            self._take_lock()
        if resume and self.checkpoint is not None and self.checkpoint.exists():
            return load_checkpoint(self.checkpoint)
        return None

    def finished_summary(self, ckpt: dict[str, Any] | None) -> dict[str, Any] | None:
        """The stored summary of a run that has ended and whose checkpoint is its last, else None."""
        path = self.path / "run.json" if self.path is not None else None
        if ckpt is None or path is None or not path.exists():
            return None
        summary = read_json(path)
        if isinstance(summary, dict) and summary.get("status") in FINISHED and summary.get("steps") == ckpt["step"]:
            return summary
        return None

    def start(self, cfg: Config, step: int) -> None:
        """Write config.json and drop the metric lines after ``step`` (the writer; the inputs are accepted)."""
        if self.writer:
            truncate_metrics(self.path / "metrics.jsonl", step)
            write_json(self.path / "config.json", cfg.to_dict(), self.fix())

    def _take_lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock
            return
        fh = open(self.path / ".lock", "a+")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            pid = writer_pid(self.path)
            raise ConfigError(f"{self.path} is being written by another process (pid {pid}); wait for it to "
                              f"end or choose another --out") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._lock = fh

    def close(self) -> None:
        """Release the lock and remove its file (a killed writer leaves the file unlocked: no writer)."""
        if self._lock is not None:
            (self.path / ".lock").unlink(missing_ok=True)   # while held: a new writer makes a new file
            self._lock.close()
            self._lock = None


def load_run(out: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, Config]:
    """The trained SimCLR model and config of a run folder (checkpoint loaded with weights_only)."""
    path = Path(out) / "checkpoint.pt"
    model, cfg = model_of(load_checkpoint(path), path)
    return model.to(device).eval(), cfg


def model_of(ckpt: dict[str, Any], path: Path) -> tuple[torch.nn.Module, Config]:
    """The SimCLR model (on the CPU, in train mode) and config that a loaded checkpoint holds."""
    try:
        saved = json.loads(ckpt["config"])
    except (TypeError, ValueError):
        saved = None
    cfg = Config.from_dict(saved, f"the config stored in {path}")
    model = build_model(cfg)
    state = {k.replace("module.", "", 1) if k.startswith("module.") else k: v for k, v in ckpt["model"].items()}
    load_model_state(model, state, str(path))
    return model, cfg
