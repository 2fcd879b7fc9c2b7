"""Trained once: a cache of pretraining runs, keyed by what the run computes.

The book's chapters evaluate the same trained encoders again and again
(chapter 1's model is chapter 4's Table 3 and t-SNE model and chapter 6's
evaluation model). :func:`cached_pretrain` runs :func:`~simclr_lite.train.pretrain`
once and stores the run folder (:mod:`simclr_lite.run`) under
``<cache>/runs/<key>/``; the next call with the same key loads it back
instead of training again.

The key is a SHA-256 of

- the :class:`~simclr_lite.config.Config` fields that change what is computed
  (all but :data:`NOT_IN_KEY`: where data lives, logging, threads),
- the data (the bytes of the four tensors a chapter passes),
- the code that computes a run: the package's training-path modules with
  comments and docstrings stripped (:func:`code_fingerprint`), and the torch version.

So a changed default, a changed augmentation or a new torch retrains, while an
edited docstring does not. A run is written to a temporary folder and renamed
into place when it has finished, so an interrupted run leaves no entry; while
one process trains a key, another that asks for the same key waits for it
(a file lock) and then loads it, instead of training it a second time.
"""
from __future__ import annotations

import ast
import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import Config
from .data import cache_dir
from .run import load_run

# Config fields that do not change the trained weights or the summary's numbers.
NOT_IN_KEY = ("data", "download", "skip_bad_images", "workers", "threads", "log_every", "checkpoint_every",
              "time_limit", "nan_check_every")
# The modules whose code decides what a run computes.
CODE_MODULES = ("augment", "config", "data", "distributed", "evaluate", "losses", "models", "optim", "sampling",
                "splits", "train")
_HERE = Path(__file__).resolve().parent


@contextlib.contextmanager
def _exclusive(path: Path):
    """Hold an exclusive lock on ``path`` (POSIX ``flock``; without it, e.g. on Windows, no lock)."""
    with open(path, "w") as fh:
        try:
            import fcntl
        except ImportError:
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def code_fingerprint(modules: tuple[str, ...] = CODE_MODULES) -> str:
    """SHA-256 of the named package modules' syntax trees, without comments, docstrings or layout."""
    h = hashlib.sha256()
    for name in modules:
        tree = _strip_docstrings(ast.parse((_HERE / f"{name}.py").read_text()))
        h.update(name.encode())
        h.update(ast.dump(tree, annotate_fields=False).encode())
    return h.hexdigest()


def data_fingerprint(tensors: tuple[torch.Tensor, ...]) -> str:
    """SHA-256 of the tensors' shapes, dtypes and bytes."""
    h = hashlib.sha256()
    for t in tensors:
        a = np.ascontiguousarray(t.detach().cpu().numpy())
        h.update(f"{tuple(a.shape)}{a.dtype}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def run_key(cfg: Config, data: tuple[torch.Tensor, ...], augment_key: str | None = None) -> str:
    """The cache key of pretraining ``cfg`` on ``data`` (see the module docstring); 16 hex digits.

    ``augment_key`` names the caller's own view functions (``pretrain(augment=...)``, e.g. Fig. 5's
    asymmetric branches), which the config does not describe; None: the config's SimCLRAugment.
    """
    fields = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_IN_KEY}
    parts: dict[str, Any] = {"config": fields, "data": data_fingerprint(data), "code": code_fingerprint(),
                             "torch": torch.__version__}
    if augment_key is not None:      # absent otherwise, so the keys of runs without it stay what they were
        parts["augment"] = augment_key
    payload = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def runs_dir() -> Path:
    """``<cache>/runs``: ``$SIMCLR_CACHE/runs``, else ``data/cache/runs`` (see :func:`simclr_lite.data.cache_dir`)."""
    return cache_dir() / "runs"


def _read_history(folder: Path) -> list[dict[str, Any]]:
    path = folder / "metrics.jsonl"
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []


def cached_pretrain(cfg: Config, data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
                    name: str = "run", progress: bool = False, root: str | os.PathLike | None = None,
                    augment: Any = None, augment_key: str | None = None) -> dict[str, Any]:
    """:func:`~simclr_lite.train.pretrain` ``cfg`` on ``data``, or load the same run from the cache.

    Returns pretrain's summary with the trained ``model`` (eval mode, on the CPU), the metric
    ``history``, ``cached`` (True when it was loaded) and ``folder`` (the run folder).
    ``name`` only labels the folder (``<name>-<key>``): a run stored under another name with the same
    key is loaded, not trained again. ``root`` replaces :func:`runs_dir`.
    ``augment`` (one view function or a pair, as in ``pretrain``) needs ``augment_key``, a string that
    names what the functions compute (and changes when they do): code cannot be keyed reliably.
    The summary's ``wall_time_s`` is the training time of the run when it was trained.
    """
    from .train import pretrain   # train imports this package's modules; imported here to keep this one light

    if (augment is None) != (augment_key is None):
        raise ValueError("cached_pretrain: pass augment and augment_key together (the key names the views, "
                         "e.g. augment_key='fig5:crop>color')")
    root = Path(root) if root is not None else runs_dir()
    key = run_key(cfg, data, augment_key)
    folder = root / f"{name}-{key}"
    same = sorted(p for p in root.glob(f"*-{key}") if (p / "run.json").exists()) if root.is_dir() else []
    if not (folder / "run.json").exists() and same:
        folder = same[0]             # the same run under another chapter's name: the key decides, not the name
    cached = True
    if not (folder / "run.json").exists():
        root.mkdir(parents=True, exist_ok=True)
        with _exclusive(root / f".{folder.name}.lock"):     # one process trains a key; the others wait
            if not (folder / "run.json").exists():
                tmp = root / f".{folder.name}.{os.getpid()}.{time.time_ns()}.tmp"
                try:
                    pretrain(cfg, out=tmp, data=data, progress=progress, augment=augment)
                    os.replace(tmp, folder)      # atomic: the entry appears whole or not at all
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
                cached = False
    summary = json.loads((folder / "run.json").read_text())
    model, _ = load_run(folder)
    summary.update(model=model, history=_read_history(folder), cached=cached, folder=str(folder))
    return summary
