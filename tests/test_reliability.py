"""Faults a long pretraining run meets, run through the CLI (issue 6; the book's "Faults and recovery" page lists them).

Each run here is ``simclr_lite.__main__.main(argv)`` in a child process made
with ``os.fork()``: the same code as ``python -m simclr_lite`` (whose entry
point ``tests/test_cli.py`` covers), without paying the 10-20 s import of
torch for every run. The child sets ``torch.use_deterministic_algorithms(True)``,
writes stdout/stderr to files, and can be given a *hook* that injects a fault
into it: SIGKILL in the middle of writing a checkpoint or between its fsync
and its rename, a full disk (``ENOSPC``) during a write, a NaN loss. The test
kills, signals and resumes these children, and compares the final weights
and every metric line with a run that was never interrupted.

Exit codes: 0 done, 2 a one-line ``error: ...`` (bad input, full disk, NaN),
143 (128 + SIGTERM) after a preemption signal (SIGTERM or SIGUSR1) saved a
checkpoint, -9 here for a SIGKILLed child.
"""
from __future__ import annotations

import errno
import io
import json
import os
import random
import re
import shutil
import signal
import sys
import tarfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch

from simclr_lite import __main__ as _cli
from simclr_lite import evaluate as _evaluate
from simclr_lite import train as _train
from simclr_lite.checkpoint import load_checkpoint

from conftest import make_tree, slow_loss

# imported once here, so that every forked child starts at once (torchvision alone takes seconds to import)
_PRELOADED = (_cli, _evaluate, _train)

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (Linux, macOS)")

TINY = ["--image-size", "16", "--arch", "resnet10", "--width", "0.125", "--batch-size", "24", "--knn-k", "10",
        "--device", "cpu", "--no-progress", "--warmup-epochs", "0.5", "--threads", "1", "--compile", "false"]
# 72 training images / batch 24 = 3 steps per epoch, 3 epochs: 9 step lines and 3 epoch lines (with kNN)
RUN = [*TINY, "--epochs", "3", "--log-every", "1", "--checkpoint-every", "1", "--knn-every", "1", "--seed", "3"]
STEPS = 9


# --------------------------------------------------------------------------- running the CLI in a child
@dataclass
class Child:
    pid: int
    stdout: Path
    stderr: Path
    rc: int | None = None

    def poll(self) -> int | None:
        if self.rc is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.rc = os.waitstatus_to_exitcode(status)
        return self.rc

    def wait(self, timeout: float = 180) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"child {self.pid} still running after {timeout} s; killed")
            time.sleep(0.02)
        return self.rc  # type: ignore[return-value]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)
            if sig == signal.SIGKILL:
                self.wait()

    @property
    def err(self) -> str:
        return self.stderr.read_text()

    @property
    def out(self) -> str:
        return self.stdout.read_text()


_children: list[Child] = []


@pytest.fixture(autouse=True)
def _no_stray_children():
    """Every child is reaped: a failing test must not leave a training run behind."""
    yield
    while _children:
        _children.pop().kill()


def spawn(argv: list[str], logs: Path, hook: Callable[[], None] | None = None) -> Child:
    """Fork a child that runs ``main(argv)`` (after ``hook()``), its output in ``logs``.{out,err}."""
    out, err = logs.with_suffix(".out"), logs.with_suffix(".err")
    logs.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            for fd, path in ((1, out), (2, err)):
                f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                os.dup2(f, fd)
                os.close(f)
            sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - lives until os._exit
            sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
            for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
                signal.signal(s, signal.SIG_DFL)
            torch.use_deterministic_algorithms(True)
            torch.set_num_threads(1)  # an OpenMP pool does not survive fork(): one thread, like --threads 1
            if hook is not None:
                hook()
            from simclr_lite.__main__ import main
            code = main(argv)
        except SystemExit as e:  # argparse's one-line errors
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:  # noqa: BLE001 -- a traceback is what the tests look for
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    child = Child(pid, out, err)
    _children.append(child)
    return child


def cli(argv: list[str], logs: Path, hook: Callable[[], None] | None = None, timeout: float = 180) -> Child:
    child = spawn(argv, logs, hook)
    child.wait(timeout)
    return child


def one_line_error(child: Child, *words: str) -> str:
    err = child.err.strip()
    assert child.rc == 2, (child.rc, err)
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for w in words:
        assert w in err, (w, err)
    return err


# --------------------------------------------------------------------------- fault hooks (run in the child)
def _checkpoint_writes(on_write: Callable[[int, Path], object]) -> None:
    """Route ``open()`` of checkpoint temp files in simclr_lite.checkpoint through ``on_write(n, path)``
    (n counts the checkpoint writes of this process from 1), which may return a file object."""
    import builtins

    import simclr_lite.checkpoint as C
    count = [0]

    def fake_open(path, mode="r", *a, **k):
        if "w" in mode and Path(path).name.startswith(".checkpoint.pt.tmp"):
            count[0] += 1
            fh = on_write(count[0], Path(path))
            if fh is not None:
                return fh
        return builtins.open(path, mode, *a, **k)
    C.open = fake_open  # a module global shadows the builtin inside simclr_lite.checkpoint only


class _FailingFile(io.FileIO):
    """A file whose writes fail after ``limit`` bytes: SIGKILL, or OSError(ENOSPC) as a full disk gives."""

    def __init__(self, path: Path, limit: int, action: str) -> None:
        super().__init__(path, "wb")
        self.limit, self.action, self.written = limit, action, 0

    def write(self, b) -> int:
        if self.written + len(b) > self.limit:
            if self.action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise OSError(errno.ENOSPC, "No space left on device")
        self.written += len(b)
        return super().write(b)


def kill_mid_write(n: int, limit: int = 4096) -> Callable[[], None]:
    """SIGKILL during the n-th checkpoint write, after ``limit`` bytes of the temp file."""
    return lambda: _checkpoint_writes(lambda i, p: _FailingFile(p, limit, "kill") if i == n else None)


def kill_before_rename(n: int) -> Callable[[], None]:
    """SIGKILL after the n-th checkpoint was written and fsynced, before it is renamed into place."""
    def hook() -> None:
        real = os.replace
        count = [0]

        def replace(src, dst, *a, **k):
            if Path(dst).name == "checkpoint.pt":
                count[0] += 1
                if count[0] == n:
                    os.kill(os.getpid(), signal.SIGKILL)
            return real(src, dst, *a, **k)
        os.replace = replace
    return hook


def disk_full_at(n: int, keep_copy: Path) -> Callable[[], None]:
    """The n-th checkpoint write hits a full disk; the checkpoint it would replace is copied to ``keep_copy``."""
    def on_write(i: int, tmp: Path):
        if i != n:
            return None
        shutil.copyfile(tmp.parent / "checkpoint.pt", keep_copy)
        return _FailingFile(tmp, 2048, "enospc")
    return lambda: _checkpoint_writes(on_write)


def nan_loss_at(step: int) -> Callable[[], None]:
    """The loss of the given step (0-based count of optimiser steps) is NaN."""
    def hook() -> None:
        import functools

        from simclr_lite.losses import LOSSES
        real, calls = LOSSES["nt_xent"], [0]

        @functools.wraps(real)
        def nt_xent(*a, **k):
            calls[0] += 1
            loss = real(*a, **k)
            return loss * float("nan") if calls[0] == step + 1 else loss
        LOSSES["nt_xent"] = nt_xent
    return hook


# --------------------------------------------------------------------------- the uninterrupted run
@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return make_tree(tmp_path_factory.mktemp("rel") / "tiny")


@pytest.fixture(scope="module")
def reference(tree, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "run"
    child = cli(["pretrain", "--data", str(tree), "--out", str(out), *RUN], out.parent / "log")
    assert child.rc == 0, child.err
    assert len(metric_rows(out)) == STEPS + 3
    return out


def metric_rows(out: Path) -> list[tuple]:
    """Every metric line, without the wall-clock times (those differ between runs)."""
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["kind"], r["step"], r["epoch"], r.get("loss"), r.get("lr"), r.get("knn_top1")) for r in rows]


def assert_same_run(out: Path, reference: Path) -> None:
    a, b = load_checkpoint(out / "checkpoint.pt"), load_checkpoint(reference / "checkpoint.pt")
    assert a["step"] == b["step"] == STEPS and a["epoch"] == 3
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        for k in sa:
            assert torch.equal(torch.as_tensor(sa[k]), torch.as_tensor(sb[k])), k
    assert metric_rows(out) == metric_rows(reference)
    ra, rb = (json.loads((d / "run.json").read_text()) for d in (out, reference))
    assert ra["status"] == rb["status"] == "completed" and ra["knn_top1"] == rb["knn_top1"]
    assert not list(out.glob(".*tmp*")), list(out.glob(".*tmp*"))  # no temp file left behind


def wait_for_lines(child: Child, out: Path, n: int, timeout: float = 180) -> float:
    """Wait until metrics.jsonl has ``n`` lines; return the mean seconds between the lines seen
    arriving (0.02 when only one arrived), so a caller can sleep a fraction of one step."""
    deadline = time.monotonic() + timeout
    path = out / "metrics.jsonl"
    seen: list[float] = []  # when each new line count was first observed
    count = -1
    while True:
        lines = len(path.read_text().splitlines()) if path.exists() else 0
        if lines != count:
            count = lines
            if lines:
                seen.append(time.monotonic())
        if lines >= n:
            break
        assert child.poll() is None, f"the run ended (rc {child.rc}) before line {n}: {child.err[-2000:]}"
        assert time.monotonic() < deadline, f"no line {n} of metrics.jsonl after {timeout} s"
        time.sleep(0.005)
    return (seen[-1] - seen[0]) / (len(seen) - 1) if len(seen) > 1 else 0.02


def resume_to_end(tree: Path, out: Path, logs: Path) -> Child:
    child = cli(["pretrain", "--data", str(tree), "--out", str(out), *RUN, "--resume"], logs)
    assert child.rc == 0, child.err
    return child


# --------------------------------------------------------------------------- SIGKILL, exact resume
@pytest.mark.parametrize("seed", [0, 1])
def test_sigkill_at_random_moments_then_resume_is_exact(tree, reference, tmp_path, seed):
    """Kill -9 twice at seeded random moments (mid-step, mid-save, mid-log...), resume, same result."""
    rng = random.Random(seed)
    out = tmp_path / "run"
    for attempt in range(2):
        argv = ["pretrain", "--data", str(tree), "--out", str(out), *RUN]
        child = spawn(argv + (["--resume"] if (out / "config.json").exists() else []), tmp_path / f"log{attempt}")
        interval = wait_for_lines(child, out, rng.randint(1 + 5 * attempt, 5 + 5 * attempt))
        # a random moment within the next step: at least 2 more lines remain, so the run cannot end
        # first however fast the machine is (a fixed 0-0.3 s let a fast CI machine finish the run)
        time.sleep(rng.uniform(0, 1) * interval)
        child.kill()
        assert child.rc == -signal.SIGKILL, child.err
    resume_to_end(tree, out, tmp_path / "log_end")
    assert_same_run(out, reference)


def test_sigkill_during_checkpoint_writes_then_resume_is_exact(tree, reference, tmp_path):
    """Killed (1) before its first checkpoint is renamed into place, (2) half-way through writing a
    checkpoint, (3) between a checkpoint's fsync and its rename: each time the previous checkpoint is
    intact, and the run resumed three times ends exactly like the uninterrupted one."""
    out = tmp_path / "run"
    argv = ["pretrain", "--data", str(tree), "--out", str(out), *RUN]
    # (1) no checkpoint yet: --resume starts the run again from step 0
    child = cli(argv, tmp_path / "log1", hook=kill_before_rename(1))
    assert child.rc == -signal.SIGKILL, child.err
    assert not (out / "checkpoint.pt").exists() and len(list(out.glob(".checkpoint.pt.tmp*"))) == 1
    # (2) the 4th checkpoint of the restarted run (step 4) is half written: step 3's stays
    child = cli(argv + ["--resume"], tmp_path / "log2", hook=kill_mid_write(4))
    assert child.rc == -signal.SIGKILL, child.err
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 3
    # (3) resumed at step 3: its 3rd checkpoint (step 6, an epoch's end) is complete but never renamed
    child = cli(argv + ["--resume"], tmp_path / "log3", hook=kill_before_rename(3))
    assert child.rc == -signal.SIGKILL, child.err
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 5
    assert len(list(out.glob(".checkpoint.pt.tmp*"))) >= 1  # stale temp files, removed by the next save
    resume_to_end(tree, out, tmp_path / "log4")
    assert_same_run(out, reference)


def test_sigkill_after_the_last_checkpoint(tree, reference, tmp_path):
    """Killed after the final checkpoint but before run.json: --resume finishes the run (kNN included)."""
    out = tmp_path / "run"

    def kill_before_run_json() -> None:
        real = os.replace

        def replace(src, dst, *a, **k):
            if Path(dst).name == "run.json":
                os.kill(os.getpid(), signal.SIGKILL)
            return real(src, dst, *a, **k)
        os.replace = replace
    child = cli(["pretrain", "--data", str(tree), "--out", str(out), *RUN], tmp_path / "log", kill_before_run_json)
    assert child.rc == -signal.SIGKILL and not (out / "run.json").exists()
    end = resume_to_end(tree, out, tmp_path / "log_end")
    # the final line says what the accuracy was measured on, and data loading and training time apart
    assert re.search(r"kNN top-1 \d\.\d{4} \(k=10, 24 test images, bank of 72 training images\) after 3\.00 "
                     r"epochs; data loading \d+ s, training \d+ s on CPU", end.out), end.out
    run = json.loads((out / "run.json").read_text())
    assert (run["knn_test_images"], run["knn_bank"]) == (24, 72) and run["data_time_s"] >= 0
    assert_same_run(out, reference)


# --------------------------------------------------------------------------- preemption signals
def test_sigterm_and_sigusr1_save_a_checkpoint_and_resume_exactly(tree, reference, tmp_path):
    out = tmp_path / "run"
    argv = ["pretrain", "--data", str(tree), "--out", str(out), *RUN]
    for i, (sig, after_lines) in enumerate(((signal.SIGTERM, 2), (signal.SIGUSR1, 6))):
        child = spawn(argv + (["--resume"] if i else []), tmp_path / f"log{i}")
        wait_for_lines(child, out, after_lines)
        os.kill(child.pid, sig)
        assert child.wait() == 143, child.err
        err = child.err.strip()
        assert "Traceback" not in err and len(err.splitlines()) == 1, err
        assert f"received signal {int(sig)}" in err and "--resume" in err, err
        saved = int(err.split("saved a checkpoint at step ")[1].split()[0])
        assert load_checkpoint(out / "checkpoint.pt")["step"] == saved
        assert max(r[1] for r in metric_rows(out)) == saved  # the log ends where the checkpoint is
    resume_to_end(tree, out, tmp_path / "log_end")
    assert_same_run(out, reference)


# --------------------------------------------------------------------------- full disk, NaN
def test_full_disk_while_saving_keeps_the_last_checkpoint(tree, reference, tmp_path):
    out = tmp_path / "run"
    before = tmp_path / "checkpoint_before.pt"
    child = cli(["pretrain", "--data", str(tree), "--out", str(out), *RUN], tmp_path / "log",
                hook=disk_full_at(5, keep_copy=before))
    one_line_error(child, f"could not write checkpoint {out / 'checkpoint.pt'}", "No space left on device",
                   "free disk space", "--resume")
    assert (out / "checkpoint.pt").read_bytes() == before.read_bytes()  # byte for byte the step-4 checkpoint
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 4
    assert not list(out.glob(".*tmp*"))
    resume_to_end(tree, out, tmp_path / "log_end")  # space freed: nothing was lost
    assert_same_run(out, reference)


def test_full_disk_while_logging(tree, reference, tmp_path):
    """The disk fills up while a metrics line is appended: one line naming the file, checkpoint kept."""
    out = tmp_path / "run"

    def full_metrics() -> None:
        import builtins

        import simclr_lite.run as R
        count = [0]

        def fake_open(path, mode="r", *a, **k):
            if Path(path).name == "metrics.jsonl" and "a" in mode:
                count[0] += 1
                if count[0] == 5:  # the line of step 4, before step 4's checkpoint
                    raise OSError(errno.ENOSPC, "No space left on device", str(path))
            return builtins.open(path, mode, *a, **k)
        R.open = fake_open  # a module global shadows the builtin inside simclr_lite.run only
    child = cli(["pretrain", "--data", str(tree), "--out", str(out), *RUN], tmp_path / "log", hook=full_metrics)
    one_line_error(child, "No space left on device", str(out / "metrics.jsonl"), "free disk space", "--resume")
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 3
    assert len(metric_rows(out)) == 4
    resume_to_end(tree, out, tmp_path / "log_end")
    assert_same_run(out, reference)


def test_nan_loss_stops_before_a_broken_checkpoint(tree, tmp_path):
    """NaN at step 5 with checks every 4 steps but checkpoints every step: the run stops at the first
    save after the NaN, names the step, and the checkpoint on disk is the last good one (step 5)."""
    out = tmp_path / "run"
    child = cli(["pretrain", "--data", str(tree), "--out", str(out), *RUN, "--nan-check-every", "4", "--log-every", "4"],
                tmp_path / "log", hook=nan_loss_at(5))
    one_line_error(child, "NaN/inf at step 5", "--lr", "--temperature", "--amp", "last good checkpoint")
    ck = load_checkpoint(out / "checkpoint.pt")
    assert ck["step"] == 5
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())


# --------------------------------------------------------------------------- bad input: one line, nothing written
def _tree_with(tmp_path: Path, name: str, content: bytes) -> Path:
    root = make_tree(tmp_path / "data", per_class=8)
    (root / "train" / "class1" / name).write_bytes(content)
    return root


def _png(tmp_path: Path) -> bytes:
    return next((make_tree(tmp_path / "png", classes=1, per_class=1, splits=("train",)) / "train").rglob("*.png"))\
        .read_bytes()


@pytest.mark.parametrize("name,content,words", [
    ("zero.png", b"", ["zero.png", "empty (0 bytes)", "--skip-bad-images"]),
    ("cut.png", None, ["cut.png", "cannot decode", "--skip-bad-images"]),
    ("notes.txt", b"shopping list", ["notes.txt", "not an image file", "--skip-bad-images"]),
    ("photo.jpg", b"<html>404 not found</html>", ["photo.jpg", "not a recognised image format"]),
])
def test_bad_image_files(tmp_path, name, content, words):
    content = _png(tmp_path)[:60] if content is None else content
    root = _tree_with(tmp_path, name, content)
    out = tmp_path / "out"
    one_line_error(cli(["pretrain", "--data", str(root), "--out", str(out), *TINY, "--epochs", "1"],
                       tmp_path / "log"), *words)
    assert not out.exists()
    # skipped and counted with the flag
    ok = cli(["pretrain", "--data", str(root), "--out", str(tmp_path / "skip"), *TINY, "--epochs", "1",
              "--skip-bad-images", "true"], tmp_path / "log2")
    assert ok.rc == 0, ok.err
    assert "skipped 1 unreadable files" in ok.out


def test_no_readable_images_names_the_folder(tmp_path):
    root = make_tree(tmp_path / "data", per_class=2)
    for f in (root / "train").rglob("*.png"):
        f.write_bytes(b"")
    one_line_error(cli(["pretrain", "--data", str(root), "--out", str(tmp_path / "o"), *TINY, "--epochs", "1",
                        "--skip-bad-images", "true"], tmp_path / "log"),
                   f"{root / 'train'} holds no readable images", "6 unreadable files skipped")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "zero-byte", "flipped"])
def test_corrupt_archive(tmp_path, damage):
    src = make_tree(tmp_path / "src", per_class=8)
    root = tmp_path / "data"
    root.mkdir()
    with tarfile.open(root / "train.tar.gz", "w:gz") as tar:
        tar.add(src / "train", arcname="train")
    shutil.copytree(src / "test", root / "test")
    data = (root / "train.tar.gz").read_bytes()
    data = {"truncated": data[:len(data) // 2], "garbage": os.urandom(len(data)), "zero-byte": b"",
            "flipped": data[:12] + bytes(b ^ 0xFF for b in data[12:40]) + data[40:]}[damage]
    (root / "train.tar.gz").write_bytes(data)
    one_line_error(cli(["pretrain", "--data", str(root), "--out", str(tmp_path / "o"), *TINY, "--epochs", "1"],
                       tmp_path / "log"), str(root / "train.tar.gz"), "download or copy it again")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args,words", [
    (["--bogus-flag", "1"], ["unrecognized arguments: --bogus-flag"]),
    (["--preset", "imagenet-r51"], ["invalid choice: 'imagenet-r51'"]),
    (["--batch-size", "two"], ["--batch-size", "'two'"]),
    (["--lr", "1e-3x"], ["--lr expects a float", "1e-3x"]),
    (["--lr", "inf"], ["learning rate", "inf"]),
    (["--temperature", "nan"], ["temperature must be > 0", "nan"]),
    (["--image-size", "0"], ["--image-size must be at least 1, got 0"]),
    (["--log-every", "0"], ["--log-every must be at least 1, got 0"]),
    (["--stem-stride", "0"], ["--stem-stride must be at least 1"]),
    (["--proj-dim", "-1"], ["--proj-dim must be at least 1"]),
    (["--threads", "-1"], ["--threads must be >= 0"]),
    (["--warmup-epochs", "-1"], ["--warmup-epochs must be >= 0"]),
    (["--checkpoint-every", "-5"], ["--checkpoint-every must be >= 0"]),
    (["--strength", "5"], ["colour strength", "2.5"]),
    (["--arch", "resnet99"], ["unknown architecture 'resnet99'"]),
    (["--device", "tpu"], ["unknown device 'tpu'"]),
    (["--optimizer", "adamw"], ["--optimizer must be one of", "adamw"]),
])
def test_bad_flag_values(tree, tmp_path, args, words):
    out = tmp_path / "o"
    one_line_error(cli(["pretrain", "--data", str(tree), "--out", str(out), *TINY, "--epochs", "1", *args],
                       tmp_path / "log"), *words)
    assert not out.exists()


@pytest.mark.parametrize("case", ["missing", "empty", "archive", "no_train", "batch_too_large"])
def test_refused_pretrain_creates_no_run_folder(tree, tmp_path, case):
    """The fault table's "nothing is written" rows: a refused run leaves no --out folder behind."""
    if case == "missing":
        data, words = tmp_path / "nowhere", ["does not exist", "--data"]
    elif case == "empty":
        data, words = tmp_path / "empty", ["train/"]
        data.mkdir()
    elif case == "archive":  # the archive itself as --data, not the folder holding it
        data, words = tmp_path / "train.tar.gz", ["train.tar.gz"]
        with tarfile.open(data, "w:gz") as tar:
            tar.add(tree / "train", arcname="train")
    elif case == "no_train":
        data, words = tmp_path / "only_test", ["train"]
        shutil.copytree(tree / "test", data / "test")
    else:  # data read, then refused: 72 images cannot fill a batch of 96
        data, words = tree, ["batch size 96 is larger than the 72 training images"]
    out = tmp_path / "deep" / "out"
    one_line_error(cli(["pretrain", "--data", str(data), "--out", str(out), *TINY, "--epochs", "1",
                        *(["--batch-size", "96"] if case == "batch_too_large" else [])], tmp_path / "log"), *words)
    assert not out.exists() and not out.parent.exists()


def test_output_folder_of_another_tool_or_a_file(tree, tmp_path):
    """--out pointing at something that is not a simclr_lite run: refused, and left as it was."""
    other = tmp_path / "hf_model"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "bert", "hidden_size": 768}')
    for extra in ([], ["--resume"]):
        one_line_error(cli(["pretrain", "--data", str(tree), "--out", str(other), *TINY, *extra], tmp_path / "log"),
                       str(other))
    (other / "config.json").write_text('{"model_type": "be')  # truncated by someone else's crash
    one_line_error(cli(["pretrain", "--data", str(tree), "--out", str(other), *TINY, "--resume"], tmp_path / "log"),
                   str(other / "config.json"))
    assert sorted(p.name for p in other.iterdir()) == ["config.json"]
    a_file = tmp_path / "notes.txt"
    a_file.write_text("my notes")
    one_line_error(cli(["pretrain", "--data", str(tree), "--out", str(a_file), *TINY], tmp_path / "log"),
                   str(a_file), "not a folder")
    assert a_file.read_text() == "my notes"


def test_evaluate_bad_values(reference, tmp_path):
    one_line_error(cli(["evaluate", str(reference), "--protocol", "finetune", "--label-fraction", "0"],
                       tmp_path / "log"), "--label-fraction", "(0, 1]", "got 0.0")
    assert not (reference / "eval.json").exists()


# --------------------------------------------------------------------------- issue 28: a run is one run
def _stopped_run(tree: Path, tmp_path: Path, env: bool = False) -> Path:
    """A run stopped by SIGTERM after 4 steps (checkpoint at step 4 or 5): unfinished, resumable.
    ``env``: its data comes from $SIMCLR_DATA, not --data."""
    out = tmp_path / "run"
    if env:
        child = spawn(["pretrain", "--out", str(out), *RUN], tmp_path / "stop",
                      hook=lambda: os.environ.__setitem__("SIMCLR_DATA", str(tree)))
    else:
        child = spawn(["pretrain", "--data", str(tree), "--out", str(out), *RUN], tmp_path / "stop")
    wait_for_lines(child, out, 4)
    os.kill(child.pid, signal.SIGTERM)
    assert child.wait() == 143, child.err
    return out


def _snapshot(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"}


@pytest.mark.parametrize("how", ["flag", "env"])
def test_resume_on_other_images_is_refused(tree, tmp_path, how):
    """--data OTHER (or another $SIMCLR_DATA) on --resume: refused in one line, nothing changed."""
    out = _stopped_run(tree, tmp_path, env=how == "env")
    other = make_tree(tmp_path / "other", per_class=24)
    for f in list((other / "train" / "class0").iterdir())[:3]:   # the same layout, other pixels
        f.write_bytes((other / "train" / "class1" / f.name).read_bytes())
    before = _snapshot(out)
    if how == "flag":
        child = cli(["pretrain", "--data", str(other), "--out", str(out), *RUN, "--resume"], tmp_path / "log")
    else:
        argv = ["pretrain", "--out", str(out), *RUN, "--resume"]
        child = cli(argv, tmp_path / "log", hook=lambda: os.environ.__setitem__("SIMCLR_DATA", str(other)))
    one_line_error(child, str(out), "other images", "--data")
    assert _snapshot(out) == before


@pytest.mark.parametrize("flags,words", [
    (["--dtype", "float64"], ["dtype='float32', not 'float64'"]),
    (["--epochs", "5"], ["planned for 3 epochs, not 5", "--extend"]),
    (["--epochs", "2"], ["cannot be shortened"]),
    (["--extend"], ["already planned for 3 epochs"]),
])
def test_resume_with_another_trajectory_is_refused(tree, tmp_path, flags, words):
    out = _stopped_run(tree, tmp_path)
    before = _snapshot(out)
    one_line_error(cli(["pretrain", "--data", str(tree), "--out", str(out), *RUN, "--resume", *flags],
                       tmp_path / "log"), *words)
    assert _snapshot(out) == before


def test_extend_is_explicit_and_recorded(tree, reference, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    child = cli(["pretrain", "--data", str(tree), "--out", str(out), *RUN, "--resume", "--epochs", "4", "--extend"],
                tmp_path / "log")
    assert child.rc == 0, child.err
    cfg, run = (json.loads((out / f).read_text()) for f in ("config.json", "run.json"))
    assert cfg["epochs"] == run["config"]["epochs"] == 4 and cfg["extended_from"] == run["config"]["extended_from"] == 3
    assert run["steps"] == 12 and load_checkpoint(out / "checkpoint.pt")["step"] == 12
    assert [r[1] for r in metric_rows(out)][:STEPS + 3] == [r[1] for r in metric_rows(reference)]  # history kept


def test_a_finished_run_is_never_erased(tree, reference, tmp_path):
    """--resume on a finished run: nothing to train, its results stay byte for byte (run.json's kNN too);
    --resume --epochs 1 is refused instead of writing a null kNN."""
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    before = _snapshot(out)
    child = cli(["pretrain", "--data", str(tree), "--out", str(out), *RUN, "--resume"], tmp_path / "log")
    assert child.rc == 0 and "already holds a finished run" in child.out and "kNN top-1" in child.out, child.err
    assert _snapshot(out) == before
    one_line_error(cli(["pretrain", "--data", str(tree), "--out", str(out), *RUN, "--resume", "--epochs", "1"],
                       tmp_path / "log2"), "cannot be shortened")
    assert _snapshot(out) == before and json.loads((out / "run.json").read_text())["knn_top1"] is not None


def test_a_second_writer_is_refused_while_the_run_is_live(tree, tmp_path):
    out = tmp_path / "run"
    first = spawn(["pretrain", "--data", str(tree), "--out", str(out), *RUN], tmp_path / "first",
                  hook=lambda: slow_loss(0.4))
    wait_for_lines(first, out, 2)
    second = cli(["pretrain", "--data", str(tree), "--out", str(out), *RUN, "--resume"], tmp_path / "second")
    one_line_error(second, str(out), "being written by another process", f"pid {first.pid}")
    # evaluate may read it, and says it is still training, and records the step it used
    ev = cli(["evaluate", str(out), "--data", str(tree), "--k", "5"], tmp_path / "ev")
    assert ev.rc == 0 and f"still being trained (pid {first.pid})" in ev.err, ev.err
    rec = json.loads((out / "eval.json").read_text())
    assert rec["run_still_training"] is True and 1 <= rec["checkpoint_step"] < STEPS
    assert first.wait() == 0, first.err
    steps = [r[1] for r in metric_rows(out)]
    assert len(steps) == STEPS + 3 and steps == sorted(steps)       # no duplicate or out-of-order lines
    assert not (out / ".lock").exists() or _lock_is_free(out)


def _lock_is_free(out: Path) -> bool:
    from simclr_lite.run import writer_pid
    return writer_pid(out) is None


# --------------------------------------------------------------------------- issue 28: a received run folder
def _crafted_cifar(folder: Path, marker: Path) -> None:
    """A cifar-10-batches-py folder whose batches would run code if unpickled with plain pickle."""
    import pickle

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))
    batches = folder / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (batches / name).write_bytes(pickle.dumps({"data": Evil(), "labels": [0]}, protocol=2))


def test_a_received_run_folder_cannot_point_evaluate_at_code(reference, tmp_path):
    """A run folder whose checkpoint config names crafted CIFAR-10 batches: evaluate never reads that path
    unless --data passes it, and even then reads no code from a batch file."""
    from simclr_lite.checkpoint import atomic_save
    marker = tmp_path / "PWNED"
    crafted = tmp_path / "crafted"
    _crafted_cifar(crafted, marker)
    received = tmp_path / "received"
    shutil.copytree(reference, received)
    ck = load_checkpoint(received / "checkpoint.pt")
    ck["config"] = json.dumps({**json.loads(ck["config"]), "data": str(crafted)})
    atomic_save(ck, received / "checkpoint.pt")
    empty = tmp_path / "empty"
    empty.mkdir()
    no_default = lambda: os.environ.__setitem__("SIMCLR_DATA", str(empty))  # noqa: E731
    err = one_line_error(cli(["evaluate", str(received)], tmp_path / "log", hook=no_default), str(empty))
    assert str(crafted) not in err and not marker.exists()
    one_line_error(cli(["evaluate", str(received), "--data", str(crafted)], tmp_path / "log2"),
                   "data_batch_1", "refused")
    assert not marker.exists()


def test_an_unknown_setting_in_a_checkpoint_is_one_line(reference, tmp_path):
    from simclr_lite.checkpoint import atomic_save
    run = tmp_path / "newer"
    shutil.copytree(reference, run)
    ck = load_checkpoint(run / "checkpoint.pt")
    ck["config"] = json.dumps({**json.loads(ck["config"]), "flux_capacitor": 1.21})
    atomic_save(ck, run / "checkpoint.pt")
    one_line_error(cli(["evaluate", str(run), "--data", "x"], tmp_path / "log"), "flux_capacitor",
                   "another version")


# --------------------------------------------------------------------------- issue 28: evaluate's results
@pytest.mark.parametrize("args,words", [
    (["--protocol", "linear", "--epochs", "-1"], ["--epochs must be at least 1, got -1"]),
    (["--protocol", "linear", "--epochs", "0"], ["--epochs must be at least 1, got 0"]),
    (["--test-limit", "-1"], ["--test-limit must be at least 1"]),
    (["--protocol", "finetune", "--label-fraction", "nan"], ["(--label-fraction) must be in (0, 1]", "nan"]),
    (["--k", "0"], ["kNN needs k >= 1, got 0"]),
])
def test_evaluate_refuses_meaningless_arguments(reference, tree, tmp_path, args, words):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    one_line_error(cli(["evaluate", str(run), "--data", str(tree), *args], tmp_path / "log"), *words)
    assert not list(run.glob("eval*.json")) and not list(run.glob(".eval*"))


def test_evaluate_records_its_checkpoint_step(reference, tree, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    child = cli(["evaluate", str(run), "--data", str(tree), "--k", "5"], tmp_path / "log")
    assert child.rc == 0, child.err
    rec = json.loads((run / "eval.json").read_text())
    assert (rec["checkpoint_step"], rec["checkpoint_epoch"], rec["run_epochs"], rec["run_still_training"]) == \
        (STEPS, 3, 3, False)
    assert f"checkpoint at step {STEPS} (epoch 3 of 3)" in child.out


def test_evaluate_on_a_full_disk_prints_the_result_and_names_the_file(reference, tree, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(reference, run)

    def full_disk() -> None:
        import simclr_lite.checkpoint as C
        real = C.os.fsync

        def fsync(fd):
            raise OSError(errno.ENOSPC, "No space left on device")
        C.os.fsync = fsync
        del real
    child = cli(["evaluate", str(run), "--data", str(tree), "--k", "5"], tmp_path / "log", hook=full_disk)
    one_line_error(child, f"could not write {run / 'eval_knn.json'}", "No space left on device", "free disk space")
    assert "--resume" not in child.err and "knn top-1 " in child.out
    assert not list(run.glob("eval*.json")) and not list(run.glob(".eval*"))


# --------------------------------------------------------------------------- issue 28: messages
def test_full_disk_before_any_checkpoint_does_not_mention_resume(tree, tmp_path):
    out = tmp_path / "run"
    child = cli(["pretrain", "--data", str(tree), "--out", str(out), *RUN], tmp_path / "log",
                hook=lambda: _checkpoint_writes(lambda i, p: _FailingFile(p, 2048, "enospc") if i == 1 else None))
    err = one_line_error(child, f"could not write checkpoint {out / 'checkpoint.pt'}", "No space left on device",
                         "start the run again")
    assert "--resume" not in err and "is kept" not in err


def test_unwritable_out_parent_does_not_mention_a_checkpoint(tree, tmp_path):
    out = tmp_path / "locked" / "run"

    def no_write() -> None:
        import pathlib
        real = pathlib.Path.mkdir

        def mkdir(self, *a, **k):
            if self == out:
                raise PermissionError(errno.EACCES, "Permission denied", str(self))
            return real(self, *a, **k)
        pathlib.Path.mkdir = mkdir
    err = one_line_error(cli(["pretrain", "--data", str(tree), "--out", str(out), *RUN], tmp_path / "log",
                             hook=no_write), "Permission denied", str(out), "permissions", "no checkpoint was written")
    assert "--resume" not in err


def test_divergence_before_any_checkpoint_says_none_was_written(tree, tmp_path):
    out = tmp_path / "run"
    err = one_line_error(cli(["pretrain", "--data", str(tree), "--out", str(out), *RUN, "--lr", "1e30",
                              "--checkpoint-every", "0"], tmp_path / "log"), "NaN/inf", "--lr",
                         "no checkpoint was written")
    assert "--resume" not in err and "last good checkpoint" not in err and not (out / "checkpoint.pt").exists()


def test_huge_image_size_is_one_line(tree, tmp_path):
    one_line_error(cli(["pretrain", "--data", str(tree), "--out", str(tmp_path / "o"), *TINY, "--image-size",
                        "100000"], tmp_path / "log"), "--image-size must be at most 2048, got 100000")
    assert not (tmp_path / "o").exists()


def test_one_class_warns_that_knn_says_nothing(tmp_path):
    root = make_tree(tmp_path / "one", classes=1, per_class=48)
    child = cli(["pretrain", "--data", str(root), "--out", str(tmp_path / "o"), *TINY, "--epochs", "1"],
                tmp_path / "log")
    assert child.rc == 0 and "kNN top-1 1.0000" in child.out, child.err
    assert "warning: the training data has 1 class" in child.err and "says nothing" in child.err


# --------------------------------------------------------------------------- issue 28: signals
@pytest.mark.parametrize("sig,rc", [(signal.SIGINT, 130), (signal.SIGHUP, 129)])
def test_ctrl_c_and_hangup_save_a_checkpoint_and_resume_exactly(tree, reference, tmp_path, sig, rc):
    out = tmp_path / "run"
    child = spawn(["pretrain", "--data", str(tree), "--out", str(out), *RUN], tmp_path / "log")
    wait_for_lines(child, out, 3)
    os.kill(child.pid, sig)
    assert child.wait() == rc, child.err
    err = child.err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1 and signal.Signals(sig).name in err, err
    saved = int(err.split("saved a checkpoint at step ")[1].split()[0])
    assert load_checkpoint(out / "checkpoint.pt")["step"] == saved
    resume_to_end(tree, out, tmp_path / "log_end")
    assert_same_run(out, reference)
