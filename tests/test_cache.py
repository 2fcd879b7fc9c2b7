"""simclr_book.cache: a run trained once and loaded back, keyed by what it computes."""
from __future__ import annotations

import ast
import os
import signal
import time

import pytest
import torch

from simclr_book import cache
from simclr_book.cache import _strip_docstrings, cached_pretrain, code_fingerprint, run_key
from simclr_lite.config import Config

from conftest import slow_loss


def tiny_data(seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (48, 3, 16, 16), dtype=torch.uint8, generator=g)
    y = torch.arange(48) % 3
    return x, y, x[:12].clone(), y[:12].clone()


def tiny_cfg(**kw) -> Config:
    base = dict(image_size=16, arch="resnet10", width=0.125, stem_stride=1, epochs=1, batch_size=16,
                warmup_epochs=0, knn_every=0, knn_k=5, device="cpu", log_every=1)
    return Config(**{**base, **kw})


def params(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_second_call_loads_the_same_run_instead_of_training(tmp_path, monkeypatch):
    data = tiny_data()
    first = cached_pretrain(tiny_cfg(), data, name="t", root=tmp_path)
    assert first["cached"] is False and first["steps"] == 3
    import simclr_lite.train as train
    monkeypatch.setattr(train, "pretrain", lambda *a, **k: pytest.fail("a cached run was trained again"))
    second = cached_pretrain(tiny_cfg(), data, name="t", root=tmp_path)
    assert second["cached"] is True and second["folder"] == first["folder"]
    assert torch.equal(params(first["model"]), params(second["model"]))
    assert second["knn_top1"] == first["knn_top1"]
    assert [r["step"] for r in second["history"] if r["kind"] == "step"] == [1, 2, 3]
    left = [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")]
    assert left == [first["folder"].split("/")[-1]]                    # no temporary folder left


def test_key_changes_with_what_the_run_computes_and_not_with_logging():
    data = tiny_data()
    k = run_key(tiny_cfg(), data)
    assert run_key(tiny_cfg(), data) == k
    assert run_key(tiny_cfg(log_every=5, checkpoint_every=3, data="/elsewhere"), data) == k
    for change in (dict(temperature=0.1), dict(seed=1), dict(head="linear"), dict(epochs=2), dict(strength=1.0)):
        assert run_key(tiny_cfg(**change), data) != k, change
    assert run_key(tiny_cfg(), tiny_data(seed=1)) != k
    x, y, xt, yt = data
    assert run_key(tiny_cfg(), (x, (y + 1) % 3, xt, yt)) != k          # labels are part of the data


def test_code_fingerprint_ignores_docstrings_and_comments_but_not_code():
    def dump(src: str) -> str:
        return ast.dump(_strip_docstrings(ast.parse(src)), annotate_fields=False)

    a = 'def f(x):\n    """Doc."""\n    return x + 1\n'
    assert dump(a) == dump('def f(x):\n    """Other doc."""\n    # a comment\n    return x + 1  # why\n')
    assert dump(a) == dump('def f(x):\n    return (x +\n            1)\n')
    assert dump(a) != dump('def f(x):\n    """Doc."""\n    return x + 2\n')
    assert len(code_fingerprint()) == 64 and code_fingerprint() == code_fingerprint()


def test_own_views_need_a_key_and_the_key_separates_them(tmp_path):
    data = tiny_data()
    assert run_key(tiny_cfg(), data, None) == run_key(tiny_cfg(), data)      # old keys unchanged
    assert run_key(tiny_cfg(), data, "a") != run_key(tiny_cfg(), data, "b") != run_key(tiny_cfg(), data)
    calls = []

    def view(x, generator=None):
        calls.append(len(x))
        return x.float().div(255)

    with pytest.raises(ValueError, match="augment and augment_key together"):
        cached_pretrain(tiny_cfg(), data, root=tmp_path, augment=view)
    first = cached_pretrain(tiny_cfg(), data, root=tmp_path, augment=view, augment_key="identity")
    assert calls and not first["cached"]
    n = len(calls)
    again = cached_pretrain(tiny_cfg(), data, root=tmp_path, augment=view, augment_key="identity")
    assert again["cached"] and len(calls) == n and again["folder"] == first["folder"]
    assert cached_pretrain(tiny_cfg(), data, root=tmp_path)["folder"] != first["folder"]


def test_the_key_not_the_name_finds_a_run(tmp_path):
    data = tiny_data()
    first = cached_pretrain(tiny_cfg(), data, name="chapter-a", root=tmp_path)
    other = cached_pretrain(tiny_cfg(), data, name="chapter-b", root=tmp_path)
    assert other["cached"] and other["folder"] == first["folder"]


def test_code_change_retrains(tmp_path, monkeypatch):
    data = tiny_data()
    k = run_key(tiny_cfg(), data)
    monkeypatch.setattr(cache, "code_fingerprint", lambda: "changed")
    assert run_key(tiny_cfg(), data) != k


def test_interrupted_run_leaves_no_entry(tmp_path, monkeypatch):
    import simclr_lite.train as train

    def broken(cfg, out, **kw):
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "pretrain", broken)
    with pytest.raises(KeyboardInterrupt):
        cached_pretrain(tiny_cfg(), tiny_data(), root=tmp_path)
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == []   # no entry


def test_threads_are_in_the_key():
    """The thread count changes float results in the last bits (issue 28): runs with another count
    are other runs."""
    data = tiny_data()
    assert run_key(tiny_cfg(threads=1), data) != run_key(tiny_cfg(threads=2), data) != run_key(tiny_cfg(), data)


def test_code_modules_are_derived_from_trains_imports():
    assert {"train", "augment", "losses", "models", "optim", "sampling", "splits", "data"} <= set(cache.CODE_MODULES)
    assert not {"cache", "errors", "__main__"} & set(cache.CODE_MODULES)


# ---------------------------------------------------------------- recovery (issue 28)
def _entry(root):
    (folder,) = [p for p in root.iterdir() if not p.name.startswith(".")]
    return folder


@pytest.mark.parametrize("damage", ["no_run_json", "truncated_checkpoint", "bad_run_json", "bad_metrics",
                                    "no_metrics"])
def test_a_broken_entry_is_set_aside_and_trained_again(tmp_path, capsys, damage):
    data = tiny_data()
    first = cached_pretrain(tiny_cfg(), data, name="t", root=tmp_path)
    folder = _entry(tmp_path)
    if damage == "no_run_json":
        (folder / "run.json").unlink()
    elif damage == "truncated_checkpoint":
        ck = folder / "checkpoint.pt"
        ck.write_bytes(ck.read_bytes()[:1000])
    elif damage == "bad_run_json":
        (folder / "run.json").write_text('{"status": "comp')
    elif damage == "bad_metrics":
        with open(folder / "metrics.jsonl", "a") as fh:
            fh.write("garbage\n")
    else:
        (folder / "metrics.jsonl").unlink()
    capsys.readouterr()
    again = cached_pretrain(tiny_cfg(), data, name="t", root=tmp_path)
    err = capsys.readouterr().err
    assert again["cached"] is False and "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("run cache:")]
    assert folder.name in line and "set aside" in line and "training it again" in line, err
    assert torch.equal(params(first["model"]), params(again["model"]))
    assert len(list((tmp_path / ".broken").iterdir())) == 1 and _entry(tmp_path).name == folder.name
    assert cached_pretrain(tiny_cfg(), data, name="t", root=tmp_path)["cached"] is True


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_or_preempted_run_resumes_from_its_checkpoint(tmp_path, capfd, sig):
    """kill -9 / SIGTERM while an arm trains: the next call resumes from the checkpoint (not step 0), the
    lock and stale folders go, and the weights are those of a run never interrupted."""
    cfg = tiny_cfg(epochs=3, checkpoint_every=1, threads=1)
    data = tiny_data()
    straight = cached_pretrain(cfg, data, name="t", root=tmp_path / "a")
    root = tmp_path / "b"
    key = run_key(cfg, data)
    (root / f".t-{key}.99999999.1.tmp").mkdir(parents=True)        # an older version's dead temp folder
    err_file = tmp_path / "child.err"
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fd = os.open(err_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 2)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            torch.set_num_threads(1)
            slow_loss(0.3)
            cached_pretrain(cfg, data, name="t", root=root)
            code = 0
        except BaseException as e:  # noqa: BLE001
            os.write(fd, f"{type(e).__name__}: {e}\n".encode())
            code = 3
        finally:
            os._exit(code)
    partial = root / f".{key}.partial"
    deadline = time.monotonic() + 120
    while not ((partial / "checkpoint.pt").exists() and _step(partial) >= 2):
        assert time.monotonic() < deadline and os.waitpid(pid, os.WNOHANG) == (0, 0)
        time.sleep(0.05)
    os.kill(pid, sig)
    _, status = os.waitpid(pid, 0)
    if sig == signal.SIGKILL:
        assert os.waitstatus_to_exitcode(status) == -signal.SIGKILL
    else:
        msg = err_file.read_text()
        assert os.waitstatus_to_exitcode(status) == 3 and "Preempted" in msg, msg
        assert "keeps its checkpoint" in msg and "call again" in msg and "--resume" not in msg, msg
    saved = _step(partial)
    assert saved >= 2 and (root / f".{key}.lock").exists()
    capfd.readouterr()
    resumed = cached_pretrain(cfg, data, name="t", root=root, progress=False)
    assert "resuming" not in capfd.readouterr().err      # a stored execution shows what a clean run shows
    assert resumed["resumed_from_step"] == saved and straight["resumed_from_step"] is None
    assert resumed["cached"] is False and resumed["steps"] == straight["steps"] == 9
    assert torch.equal(params(straight["model"]), params(resumed["model"]))
    assert sorted(p.name for p in root.iterdir()) == [f"t-{key}"]      # no lock, partial or stale folder left


def _step(folder) -> int:
    from simclr_lite.checkpoint import load_checkpoint
    try:
        return int(load_checkpoint(folder / "checkpoint.pt")["step"])
    except Exception:  # noqa: BLE001 - being written
        return 0


@pytest.mark.parametrize("names", [("t", "t"), ("ch3", "ch4")])
def test_a_second_process_waits_for_the_first_and_loads_its_run(tmp_path, names):
    """Two processes ask for one key at once, under the same name or two chapters' names: one trains."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.starmap(_train_in_child, [(str(tmp_path), n) for n in names])
    assert sorted(results) == [False, True]          # one trained, the other loaded what it trained
    assert len([p for p in tmp_path.iterdir() if not p.name.startswith(".")]) == 1


def _train_in_child(root: str, name: str = "t") -> bool:
    import time

    import simclr_lite.train as train
    real = train.pretrain

    def slow(*a, **k):            # long enough that the other process asks while this one trains
        time.sleep(2)
        return real(*a, **k)
    train.pretrain = slow
    torch.set_num_threads(1)
    return cached_pretrain(tiny_cfg(), tiny_data(), name=name, root=root)["cached"]


# ---------------------------------------------------------------- a reader's progress bars (issue 30)
class _Kernel:
    def __init__(self, allow_stdin: bool) -> None:
        self._allow_stdin = allow_stdin


class _Shell:
    def __init__(self, allow_stdin: bool) -> None:
        self.kernel = _Kernel(allow_stdin)


@pytest.mark.parametrize("allow_stdin", [True, False])
def test_progress_shows_to_a_reader_and_never_under_nbconvert_or_nbval(tmp_path, monkeypatch, allow_stdin):
    """A person's notebook sends its cells with allow_stdin; nbclient and nbval without: the bar follows."""
    import IPython

    import simclr_lite.train as train
    assert cache.interactive() is False                       # a script, or pytest
    monkeypatch.setattr(IPython, "get_ipython", lambda: _Shell(allow_stdin))
    assert cache.interactive() is allow_stdin
    seen = {}
    real = train.pretrain

    def spy(*a, **k):
        seen["progress"] = k["progress"]
        return real(*a, **{**k, "progress": False})
    monkeypatch.setattr(train, "pretrain", spy)
    cached_pretrain(tiny_cfg(), tiny_data(), name="p", root=tmp_path)
    assert seen["progress"] is allow_stdin


def test_cached_result_computes_once_and_finds_a_result_by_its_key_under_any_name(tmp_path, monkeypatch):
    """A result (e.g. a supervised arm's) is computed once per key: a second name asking for the same
    computation loads it; other parts compute again."""
    from simclr_book.cache import cached_result
    monkeypatch.setenv("SIMCLR_CACHE", str(tmp_path))
    calls = []

    def compute():
        calls.append(1)
        return {"top1": 0.5}
    first = cached_result("cpu-sup-ch04-fig7-sup-w-seed0", {"cfg": 1}, compute)
    assert first == {"top1": 0.5, "cached": False} and len(calls) == 1
    assert cached_result("cpu-sup-ch04-fig7-sup-w-seed0", {"cfg": 1}, compute)["cached"]
    assert cached_result("cpu-sup-ch02-table1-sup-s0.5-seed0", {"cfg": 1}, compute) == {"top1": 0.5, "cached": True}
    assert len(calls) == 1 and len(list((tmp_path / "results").iterdir())) == 1
    assert not cached_result("cpu-sup-ch04-fig7-sup-w-seed0", {"cfg": 2}, compute)["cached"] and len(calls) == 2
