"""simclr_lite.checkpoint: what a checkpoint holds, atomic writes, safe loads, random state round trips."""
from __future__ import annotations

import errno
import io
import json
import os
import random
import signal

import numpy as np
import pytest
import torch

import simclr_lite.checkpoint as C
from simclr_lite.checkpoint import (
    FORMAT,
    KEYS,
    atomic_save,
    load_checkpoint,
    rng_state,
    set_rng_state,
)
from simclr_lite.errors import CheckpointError
from simclr_lite.config import Config
from simclr_lite.sampling import epoch_permutation
from simclr_lite.train import pretrain


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from conftest import make_tree

    tree = make_tree(tmp_path_factory.mktemp("ck") / "tiny")
    out = tmp_path_factory.mktemp("ckrun") / "run"
    cfg = Config(data=str(tree), image_size=16, arch="resnet10", width=0.125, epochs=1, batch_size=24,
                 warmup_epochs=0, knn_k=10, log_every=1, device="cpu", seed=5, time_limit=1e-9)
    pretrain(cfg, out, progress=False)  # the time limit stops it after one step: a mid-epoch checkpoint
    return out


# ------------------------------------------------------------------ contents
def test_checkpoint_holds_everything_and_loads_weights_only(run_dir):
    ck = torch.load(run_dir / "checkpoint.pt", weights_only=True)  # tensors and plain values only
    assert ck["format"] == FORMAT
    for k in KEYS:
        assert k in ck, k
    assert (ck["epoch"], ck["step_in_epoch"], ck["step"]) == (0, 1, 1)
    assert ck["model"] and all(isinstance(v, torch.Tensor) for v in ck["model"].values())
    assert ck["optimizer"]["state"] and ck["optimizer"]["param_groups"]
    assert ck["scheduler"]["last_epoch"] == 1
    assert isinstance(ck["scaler"], dict)  # empty unless --amp fp16 (then scale and growth tracker)
    rng = ck["rng"]
    assert set(rng) >= {"python", "numpy", "torch"}
    assert ("cuda" in rng) == (torch.cuda.is_available() and torch.cuda.is_initialized())
    # the data order is a function of (seed, epoch): both are in the checkpoint
    cfg = json.loads(ck["config"])
    assert cfg["seed"] == 5
    assert torch.equal(epoch_permutation(72, cfg["seed"], ck["epoch"]), epoch_permutation(72, 5, 0))
    # the running losses of the interrupted epoch, so a resumed run logs the same epoch mean
    assert "epoch_loss" in ck and "window_loss" in ck
    assert load_checkpoint(run_dir / "checkpoint.pt")["step"] == 1


def _draw() -> tuple:
    return (random.random(), random.getrandbits(64), tuple(np.random.rand(3)), float(np.random.randn()),
            tuple(torch.rand(3).tolist()), int(torch.randint(0, 1 << 30, ())))


@pytest.mark.parametrize("cached_gaussian", [False, True])
def test_rng_state_round_trip_through_a_checkpoint(tmp_path, cached_gaussian):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    if cached_gaussian:
        np.random.randn()  # legacy NumPy caches the second of each pair of Gaussians: that is state too
    atomic_save({"rng": rng_state()}, tmp_path / "rng.pt")
    first = _draw()
    _draw()  # move every generator on
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    assert _draw() == first


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_cuda_rng_state_round_trip():
    torch.cuda.init()
    torch.cuda.manual_seed_all(4)
    state = rng_state()
    assert "cuda" in state
    a = torch.rand(5, device="cuda")
    set_rng_state(state)
    assert torch.equal(torch.rand(5, device="cuda"), a)


# ------------------------------------------------------------------ atomic writes
class _FullDisk(io.FileIO):
    """Writes fail with ENOSPC after ``limit`` bytes, as on a disk that fills up mid-write."""

    def __init__(self, path, mode, limit: int = 1000):
        super().__init__(path, mode)
        self.limit, self.written = limit, 0

    def write(self, b):
        if self.written + len(b) > self.limit:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.written += len(b)
        return super().write(b)


def _big() -> dict:
    return {"format": FORMAT, "w": torch.arange(50_000, dtype=torch.float32)}


def _temps(folder) -> list:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


def test_atomic_save_replaces_the_file(tmp_path):
    path = tmp_path / "checkpoint.pt"
    atomic_save({"v": torch.tensor(1)}, path)
    atomic_save({"v": torch.tensor(2)}, path)
    assert int(torch.load(path, weights_only=True)["v"]) == 2
    assert _temps(tmp_path) == []


@pytest.mark.parametrize("where", ["write", "fsync", "rename", "open"])
def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch, where):
    path = tmp_path / "checkpoint.pt"
    atomic_save({"v": torch.tensor(1)}, path)
    before = path.read_bytes()
    enospc = OSError(errno.ENOSPC, "No space left on device")

    def fail(*a, **k):
        raise enospc
    if where == "write":  # the disk fills up half-way through torch.save's stream
        monkeypatch.setattr(C, "open", lambda p, m: _FullDisk(p, m), raising=False)
    elif where == "open":
        monkeypatch.setattr(C, "open", fail, raising=False)
    else:
        monkeypatch.setattr(C.os, {"fsync": "fsync", "rename": "replace"}[where], fail)
    with pytest.raises(CheckpointError) as info:
        atomic_save(_big(), path)
    msg = str(info.value)
    assert str(path) in msg and "No space left on device" in msg and "free disk space" in msg
    assert "\n" not in msg and "previous checkpoint is kept" in msg
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert _temps(tmp_path) == []


def test_interrupted_save_removes_its_temp_file(tmp_path, monkeypatch):
    """Ctrl-C during a save: the temp file goes, the previous checkpoint stays, the interrupt goes on."""
    path = tmp_path / "checkpoint.pt"
    atomic_save({"v": torch.tensor(1)}, path)
    before = path.read_bytes()

    class Interrupted(io.FileIO):
        def write(self, b):
            raise KeyboardInterrupt
    monkeypatch.setattr(C, "open", lambda p, m: Interrupted(p, m), raising=False)
    with pytest.raises(KeyboardInterrupt):
        atomic_save(_big(), path)
    assert path.read_bytes() == before and _temps(tmp_path) == []


def test_a_bug_is_not_reported_as_a_disk_problem(tmp_path):
    with pytest.raises(Exception) as info:
        atomic_save({"f": lambda: 0}, tmp_path / "checkpoint.pt")  # not picklable: a programming error
    assert not isinstance(info.value, CheckpointError)
    assert _temps(tmp_path) == []


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_stale_temp_files_of_killed_writers_are_removed(tmp_path):
    path = tmp_path / "checkpoint.pt"
    dead = tmp_path / f".checkpoint.pt.tmp{_dead_pid()}"
    alive = tmp_path / f".checkpoint.pt.tmp{os.getppid()}"  # a writer still at work: left alone
    other = tmp_path / ".metrics.jsonl.tmp"
    for f in (dead, alive, other):
        f.write_bytes(b"partial")
    atomic_save({"v": torch.tensor(1)}, path)
    assert not dead.exists() and alive.exists() and other.exists()


# ------------------------------------------------------------------ loading: safe, with one-line errors
class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # loading this with pickle would create the marker file


@pytest.mark.parametrize("kind", ["text", "empty", "truncated", "state_dict", "code", "incomplete", "folder"])
def test_load_checkpoint_refuses_what_is_not_a_checkpoint(run_dir, tmp_path, kind):
    path = tmp_path / "checkpoint.pt"
    good = (run_dir / "checkpoint.pt").read_bytes()
    marker = tmp_path / "pwned"
    if kind == "text":
        path.write_text("hello")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "state_dict":  # a torchvision-style weights file
        torch.save({"conv1.weight": torch.zeros(1)}, path)
    elif kind == "code":
        torch.save({"format": FORMAT, "x": _Evil(str(marker))}, path)
    elif kind == "incomplete":
        torch.save({"format": FORMAT, "model": {}}, path)
    else:
        path.mkdir()
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg, msg
    assert not marker.exists()  # weights_only: nothing in the file ran


def test_stop_signals_are_slurms_ctrl_c_and_hangup():
    """SIGTERM / SIGUSR1 (SLURM's preemption signals), SIGINT (Ctrl-C) and SIGHUP (a closed terminal)
    all checkpoint and stop; the handlers are put back afterwards."""
    from simclr_lite.config import Config
    from simclr_lite.train import Stop

    sigs = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT, signal.SIGHUP)
    before = [signal.getsignal(s) for s in sigs]
    for sig in sigs:
        with Stop(Config()) as stop:
            assert all(signal.getsignal(s) == stop._handle for s in sigs)
            os.kill(os.getpid(), sig)
            assert stop.signal == sig and stop.after_step(1, 0.0) and stop.reason == "signal"
        assert [signal.getsignal(s) for s in sigs] == before
