"""The run folder that ``pretrain --out`` writes, and reading it back.

A run folder holds ``config.json`` (the :class:`~simclr_lite.config.Config`),
``metrics.jsonl`` (one line per ``log_every`` steps and per epoch),
``checkpoint.pt`` (see :mod:`simclr_lite.checkpoint`) and ``run.json`` (the
summary: device, versions, data-loading and training time, final kNN).
Every file is replaced atomically; a resumed run drops the metric lines that
it is about to redo. :func:`load_run` gives back the trained network.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from .checkpoint import load_checkpoint, load_model_state
from .config import IDENTITY_FIELDS, Config, build_model
from .errors import ConfigError


def check_out_dir(out: Path, cfg: Config, resume: bool) -> None:
    """Refuse to write over a different run; require --resume to continue one. Reads only."""
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


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def write_json(path: Path, obj: dict[str, Any]) -> None:
    """``obj`` as indented JSON, atomically (temp file, rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines written after ``step`` (the part of a killed run that is redone)."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(ln + "\n" for ln in keep))
    os.replace(tmp, path)


def load_run(out: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, Config]:
    """The trained SimCLR model and config of a run folder (checkpoint loaded with weights_only)."""
    out = Path(out)
    ckpt = load_checkpoint(out / "checkpoint.pt")
    cfg = Config(**json.loads(ckpt["config"]))
    model = build_model(cfg)
    state = {k.replace("module.", "", 1) if k.startswith("module.") else k: v for k, v in ckpt["model"].items()}
    load_model_state(model, state, str(out / "checkpoint.pt"))
    return model.to(device).eval(), cfg
