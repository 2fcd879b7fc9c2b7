"""Trained once: the book's cache of pretraining runs and of other results, keyed by what they compute.

The book's chapters evaluate the same trained encoders again and again
(chapter 1's model is chapter 4's Table 3 and t-SNE model and chapter 6's
evaluation model). :func:`cached_pretrain` runs :func:`~simclr_lite.train.pretrain`
once and stores the run folder (:mod:`simclr_lite.run`) under
``<cache>/runs/<name>-<key>/``; the next call with the same key loads it back
instead of training again, whatever name asks for it.

The key is a SHA-256 of

- the :class:`~simclr_lite.config.Config` fields that change what is computed
  (all but :data:`NOT_IN_KEY`: where data lives, how often it logs and checks;
  the thread count is in it, as it changes float results in the last bits),
- the data (the bytes of the four tensors a chapter passes),
- the code that computes a run: the modules that ``train`` imports, found by
  reading their imports (:data:`CODE_MODULES`), with comments and docstrings
  stripped (:func:`code_fingerprint`), and the torch version.

So a changed default, a changed augmentation or a new torch retrains, while an
edited docstring does not. The cache recovers by itself:

- A run trains in the hidden folder ``.<key>.partial`` and is renamed into place
  when it has finished. A run that was killed or preempted there resumes from its
  checkpoint on the next call (one line says so).
- One process trains a key, under any name. Another that asks for it waits for
  it (a file lock) and then loads it. Locks and temporary folders of dead
  processes are cleaned up.
- A broken entry (no run.json, a damaged checkpoint, unreadable JSON, a missing
  metrics.jsonl) is moved to ``<cache>/runs/.broken/`` and trained again (one line says so).
"""
from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

import simclr_lite
from simclr_lite.checkpoint import atomic_save
from simclr_lite.config import NO_EFFECT, Config
from simclr_lite.data import cache_dir, fingerprint
from simclr_lite.errors import Preempted, SimCLRError
from simclr_lite.run import load_run, read_json, read_metrics

# Config fields that do not change the trained weights or the summary's numbers.
NOT_IN_KEY = NO_EFFECT
_HERE = Path(simclr_lite.__file__).resolve().parent     # the package whose code computes a run
# Imported by train but never deciding what a run computes: errors and the run folder's files.
_NOT_COMPUTING = ("errors", "checkpoint", "run")


def _imports_of(module: str) -> set[str]:
    """The package modules that ``module`` imports (``from .x import``, ``from . import x``)."""
    found = set()
    for node in ast.walk(ast.parse((_HERE / f"{module}.py").read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [node.module] if node.module else [a.name for a in node.names]
            found.update(n.split(".")[0] for n in names if (_HERE / f"{n.split('.')[0]}.py").exists())
    return found


def training_modules() -> tuple[str, ...]:
    """``train`` and every package module it imports, directly or not, except :data:`_NOT_COMPUTING`:
    the code that computes a run (derived, so a new training module cannot fall out of the key)."""
    seen, todo = set(), ["train"]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(_imports_of(m) - seen)
    return tuple(sorted(seen - set(_NOT_COMPUTING)))


CODE_MODULES = training_modules()


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


@functools.lru_cache(maxsize=None)
def code_fingerprint(modules: tuple[str, ...] = CODE_MODULES) -> str:
    """SHA-256 of the named package modules' syntax trees, without comments, docstrings or layout: read once
    per process (the code this process imported; every run key and result key needs it)."""
    h = hashlib.sha256()
    for name in modules:
        tree = _strip_docstrings(ast.parse((_HERE / f"{name}.py").read_text()))
        h.update(name.encode())
        h.update(ast.dump(tree, annotate_fields=False).encode())
    return h.hexdigest()


def run_key(cfg: Config, data: tuple[torch.Tensor, ...], augment_key: str | None = None) -> str:
    """The cache key of pretraining ``cfg`` on ``data`` (see the module docstring); 16 hex digits.

    ``augment_key`` names the caller's own view functions (``pretrain(augment=...)``, e.g. Fig. 5's
    asymmetric branches), which the config does not describe; None: the config's SimCLRAugment.
    """
    fields = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_IN_KEY}
    parts: dict[str, Any] = {"config": fields, "data": fingerprint(data), "code": code_fingerprint(),
                             "torch": torch.__version__}
    if augment_key is not None:      # absent otherwise, so the keys of runs without it stay what they were
        parts["augment"] = augment_key
    payload = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def run_folders(cfg: Config, data: tuple[torch.Tensor, ...], augment_key: str | None = None) -> list[Path]:
    """The run cache's folders of ``cfg`` on ``data``, whatever name each was stored under (a run an
    interrupted call left half-trained included)."""
    key = run_key(cfg, data, augment_key)
    return [p for p in runs_dir().glob(f"*-{key}") if not p.name.startswith(".")]


def run_cached(cfg: Config, data: tuple[torch.Tensor, ...], augment_key: str | None = None) -> bool:
    """Whether the run cache holds a finished run of ``cfg`` on ``data`` (under any name): what
    :func:`cached_pretrain` would load instead of training."""
    return any((p / "run.json").is_file() for p in run_folders(cfg, data, augment_key))


def runs_dir() -> Path:
    """``<cache>/runs``: ``$SIMCLR_CACHE/runs``, else ``data/cache/runs`` (see :func:`simclr_lite.data.cache_dir`)."""
    return cache_dir() / "runs"


class _Broken(Exception):
    """A cache entry that cannot be loaded; the message says why."""


def _load_entry(folder: Path) -> dict[str, Any]:
    """A finished entry's summary, model (eval mode, on the CPU) and history; :class:`_Broken` if damaged."""
    try:
        summary = read_json(folder / "run.json")
        if not isinstance(summary, dict) or "status" not in summary:
            raise _Broken("run.json is not a run summary")
        if not (folder / "metrics.jsonl").is_file():
            raise _Broken("metrics.jsonl is missing")
        history, bad = read_metrics(folder / "metrics.jsonl")
        if bad:
            raise _Broken(f"{bad} unreadable lines in metrics.jsonl")
        model, _ = load_run(folder)
    except SimCLRError as e:
        raise _Broken(str(e).split(";")[0]) from None
    return {**summary, "model": model, "history": history}


def _set_aside(folder: Path, why: str) -> None:
    """Move a broken entry to ``<root>/.broken/`` (kept for inspection) and say so in one line."""
    dest = folder.parent / ".broken" / f"{folder.name}.{time.strftime('%Y%m%d-%H%M%S')}.{os.getpid()}"
    dest.parent.mkdir(exist_ok=True)
    os.replace(folder, dest)
    print(f"run cache: {folder.name} was broken ({why}); set aside in {dest.parent.name}/{dest.name}, "
          f"training it again", file=sys.stderr)


def _clean_stale(root: Path, key: str) -> None:
    """Remove temporary folders of this key that a killed process of an older version left
    (``.<name>-<key>.<pid>.<ns>.tmp``, their process gone)."""
    for tmp in root.glob(f".*-{key}.*.tmp"):
        pid = tmp.name.split(".")[-3] if tmp.name.count(".") >= 3 else ""
        if pid.isdigit():
            try:
                os.kill(int(pid), 0)
                continue            # still running
            except ProcessLookupError:
                pass
            except OSError:
                continue
        shutil.rmtree(tmp, ignore_errors=True)


def interactive() -> bool:
    """True in a notebook that a person runs (its front-end accepts input), False under nbconvert, nbval
    and in scripts: so a reader sees each run's progress bar, and none lands in the book's stored outputs.

    Jupyter front-ends (Lab, Notebook, Colab) send their cells with ``allow_stdin`` true; nbclient
    (nbconvert) and nbval send theirs with it false, and the kernel keeps it for the running cell.
    """
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with the book's requirements
        return False
    kernel = getattr(get_ipython(), "kernel", None)
    return bool(getattr(kernel, "_allow_stdin", False))


def cached_pretrain(cfg: Config, data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
                    name: str = "run", progress: bool | None = None, root: str | os.PathLike | None = None,
                    augment: Any = None, augment_key: str | None = None) -> dict[str, Any]:
    """:func:`~simclr_lite.train.pretrain` ``cfg`` on ``data``, or load the same run from the cache.

    Returns pretrain's summary with the trained ``model`` (eval mode, on the CPU), the metric
    ``history``, ``cached`` (True when it was loaded) and ``folder`` (the run folder).
    ``name`` only labels the folder (``<name>-<key>``): a run stored under another name with the same
    key is loaded, not trained again. ``root`` replaces :func:`runs_dir`. ``progress``: the training's
    progress bar (None: shown when a person runs the notebook, :func:`interactive`).
    ``augment`` (one view function or a pair, as in ``pretrain``) needs ``augment_key``, a string that
    names what the functions compute (and changes when they do): code cannot be keyed reliably.
    The summary's ``wall_time_s`` is the training time of the run when it was trained. A run that an
    interrupted call left half-trained continues from its checkpoint; the summary of the call that finishes
    it says from which step (``resumed_from_step``, None when it trained from the start), and a person
    running the notebook is told on stderr (a stored execution's outputs stay those of a clean run).
    """
    from simclr_lite import train   # imported here to keep this module light (torchvision)

    if (augment is None) != (augment_key is None):
        raise ValueError("cached_pretrain: pass augment and augment_key together (the key names the views, "
                         "e.g. augment_key='fig5:crop>color')")
    root = Path(root) if root is not None else runs_dir()
    progress = interactive() if progress is None else progress
    key = run_key(cfg, data, augment_key)
    root.mkdir(parents=True, exist_ok=True)
    lock = root / f".{key}.lock"
    with _exclusive(lock):     # one process trains a key, under any name; the others wait, then load it
        cached = True
        entry = None
        for folder in sorted(root.glob(f"*-{key}"), key=lambda p: (p.name != f"{name}-{key}", p.name)):
            if folder.name.startswith("."):
                continue
            try:
                entry = _load_entry(folder)
                break
            except _Broken as e:
                _set_aside(folder, str(e))
        if entry is None:
            _clean_stale(root, key)
            partial = root / f".{key}.partial"
            resume = (partial / "config.json").is_file()
            resumed_from = _checkpoint_step(partial) if resume else None
            if resume and progress:   # a person watching; a stored execution keeps it in the summary only
                print(f"run cache: resuming the interrupted run {name} ({key}) from step {resumed_from}",
                      file=sys.stderr)
            try:
                train.pretrain(cfg, out=partial, data=data, progress=progress, augment=augment, resume=resume)
            except Preempted as e:
                raise Preempted(f"{name} stopped by signal {e.signum or ''} at step {_checkpoint_step(partial)}; "
                                f"the run cache keeps its checkpoint: call again (run the cell again) to continue "
                                f"from there", e.signum) from None
            folder = root / f"{name}-{key}"
            os.replace(partial, folder)      # atomic: the entry appears whole or not at all
            entry, cached = _load_entry(folder), False
            entry["resumed_from_step"] = resumed_from
        lock.unlink(missing_ok=True)     # the entry exists now: a later caller needs no lock to find it
    entry.update(cached=cached, folder=str(folder))
    return entry


def _checkpoint_step(folder: Path) -> int:
    from simclr_lite.checkpoint import load_checkpoint
    try:
        return int(load_checkpoint(folder / "checkpoint.pt")["step"])
    except SimCLRError:
        return 0


# ---------------------------------------------------------------- results other than runs (chapter 5)
def result_key(parts: dict[str, Any]) -> str:
    """16 hex digits of a SHA-256 of ``parts`` (settings, data fingerprints) with the package's code
    (:func:`code_fingerprint`) and the torch version: the key of a result computed once."""
    parts = {**parts, "code": code_fingerprint(), "torch": torch.__version__}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def results_dir() -> Path:
    """``<cache>/results``: results other than run folders (:func:`cached_result`, chapter 5's torchrun runs)."""
    return cache_dir() / "results"


def stored_result(parts: dict[str, Any]) -> Path | None:
    """The file of the cached result of ``parts`` (:func:`cached_result`) under any name, or None."""
    return next(iter(sorted(results_dir().glob(f"*-{result_key(parts)}.pt"))), None)


def cached_result(name: str, parts: dict[str, Any], compute: Any) -> dict[str, Any]:
    """``compute()`` once, then loaded: a dict of tensors and numbers saved atomically under
    :func:`results_dir` as ``<name>-<result_key(parts)>.pt`` and loaded with ``weights_only=True``;
    ``cached`` says whether it was loaded. ``name`` only labels the file: a result stored under another
    name with the same key (the same computation) is loaded, as :func:`cached_pretrain` loads runs."""
    path = results_dir() / f"{name}-{result_key(parts)}.pt"
    if not path.exists():
        path = stored_result(parts) or path
    if path.exists():
        return {**torch.load(path, weights_only=True), "cached": True}
    path.parent.mkdir(parents=True, exist_ok=True)
    rec = compute()
    atomic_save(rec, path)
    return {**rec, "cached": False}
