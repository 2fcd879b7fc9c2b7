"""Checkpoints that survive being killed: atomic writes, safe loads, exact resume.

A checkpoint holds the model, optimiser, schedule, gradient scaler, epoch and
step, and every random generator's state, so a resumed run continues exactly
where it stopped. It is written to a temporary file in the same folder,
flushed to disk (fsync) and renamed over the old one, so a crash or a full
disk during the write leaves the last good checkpoint in place. It is loaded
with ``torch.load(weights_only=True)``: a checkpoint can hold tensors and
plain Python values only, never code. A writer killed mid-write (SIGKILL,
power loss) leaves only a hidden ``.checkpoint.pt.tmp<pid>`` file next to
the last good checkpoint; the next successful save deletes it.

Book: chapter 7 (``book/07_scaling_up.ipynb``) and the README's fault table.
"""
from __future__ import annotations

import glob
import os
import random
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .errors import CheckpointError

FORMAT = "simclr_lite.checkpoint/1"
# What every checkpoint holds (see ``_save`` in :mod:`simclr_lite.train`). The data order needs
# no state of its own: it is a function of (seed, epoch), and the seed is in ``config``.
KEYS = ("model", "optimizer", "scheduler", "scaler", "epoch", "step_in_epoch", "step", "rng", "config")


class _Recorder:
    """A file wrapper that remembers the first ``OSError`` of a write.

    ``torch.save`` turns an error of the file it writes to (``ENOSPC``, a
    full disk) into a ``RuntimeError`` ("unexpected pos ..."); the recorded
    ``OSError`` lets :func:`atomic_save` say what really went wrong.
    """

    def __init__(self, fh: Any) -> None:
        self.fh = fh
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self.fh.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def flush(self) -> None:
        self.fh.flush()

    def __getattr__(self, name: str) -> Any:   # read, seek, tell...: the file's own (numpy's savez asks)
        return getattr(self.fh, name)


def _remove_stale_temps(path: Path) -> None:
    """Delete temporary files that a killed writer of ``path`` left behind (its process is gone)."""
    prefix = f".{path.name}.tmp"
    for f in path.parent.glob(f"{glob.escape(prefix)}*"):
        pid = f.name[len(prefix):]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)  # still running: its write is in progress, leave it
        except ProcessLookupError:
            f.unlink(missing_ok=True)
        except OSError:
            pass


def atomic_write(path: str | os.PathLike, fill: Callable[[Any], Any], fix: str, what: str = "") -> None:
    """Write ``path`` atomically: ``fill(fh)`` writes a temporary file in the same folder, which is
    flushed to disk (fsync) and renamed over ``path``; the rename is made durable too.

    On an I/O error (a full disk, a read-only folder) the temporary file is removed, the previous file
    at ``path`` is untouched, and a one-line :class:`CheckpointError` names the file and says ``fix``
    (what ``what``, e.g. "checkpoint", names). A process killed mid-write (SIGKILL, power loss) leaves
    the previous file intact too; its temporary file is removed by the next successful write.
    Every file simclr_lite writes goes through here.
    """
    path = Path(path)
    existed = path.exists()
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    rec: _Recorder | None = None
    try:
        with open(tmp, "wb") as fh:
            rec = _Recorder(fh)
            fill(rec)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        err = e if isinstance(e, OSError) else (rec.error if rec is not None else None)
        if err is None:  # not an I/O problem (a bug, or Ctrl-C): the temp file is gone, re-raise
            raise
        kept = f"the previous {what or 'file'} is kept; " if existed else ""
        raise CheckpointError(f"could not write {what + ' ' if what else ''}{path} ({err.strerror or err}); "
                              f"{kept}{fix}") from None
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    _remove_stale_temps(path)


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically (:func:`atomic_write`).

    On a failure (a full disk, say) the previous checkpoint is kept and a
    :class:`CheckpointError` names the path and says how to go on.
    """
    fix = ("free disk space and resume with --resume" if Path(path).exists()
           else "free disk space and start the run again (no checkpoint was written yet)")
    atomic_write(path, lambda fh: torch.save(obj, fh), fix, what="checkpoint")


def rng_state() -> dict[str, Any]:
    """Every random generator's state, in a form ``weights_only`` loading accepts."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint written by :func:`atomic_save` (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; pass a run folder that holds checkpoint.pt")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 -- any unpickling failure means "not a checkpoint"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} is not a readable simclr_lite checkpoint ({first[:160]}); "
                              f"delete it or point at another run") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a simclr_lite checkpoint (no '{FORMAT}' marker); "
                              f"point at a run folder written by 'python -m simclr_lite pretrain'")
    missing = [k for k in KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} is incomplete (no {', '.join(missing)}); point at a run folder written "
                              f"by 'python -m simclr_lite pretrain'")
    return ckpt


def load_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict`` with a one-line error when the architecture differs."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        detail = (f"{len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} of another shape"
                  + (f" (e.g. {wrong[0]}: {tuple(state[wrong[0]].shape)} vs {tuple(own[wrong[0]].shape)})"
                     if wrong else ""))
        raise CheckpointError(f"checkpoint {source} is from another architecture ({detail}); "
                              f"use the same --arch/--width/--head as the run that wrote it")
    model.load_state_dict(state)
