"""simclr_lite.train: a smoke pretrain lowers the loss, checkpoints load, resume is exact."""
from __future__ import annotations

import functools
import json
import math

import pytest
import torch

from simclr_lite.checkpoint import load_checkpoint
from simclr_lite.errors import ConfigError, TrainingError
from simclr_lite.config import Config, preset
from simclr_lite.run import load_run
from simclr_lite.train import pretrain

from conftest import mixed_mode_tree, real_cifar_root


def tiny_cfg(tree, **kw) -> Config:
    base = dict(data=str(tree), image_size=16, arch="resnet10", width=0.125, stem_stride=1, epochs=3,
                batch_size=24, lr=0.5, optimizer="lars", warmup_epochs=0.5, temperature=0.5, knn_every=1,
                knn_k=10, log_every=1, seed=0, device="cpu")
    base.update(kw)
    return Config(**base)


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.state_dict().values() if p.dtype.is_floating_point])


def test_smoke_pretrain_lowers_loss_and_checkpoints(tiny_tree, tmp_path):
    out = tmp_path / "run"
    summary = pretrain(tiny_cfg(tiny_tree, epochs=6), out, progress=False)
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [l for l in lines if l["kind"] == "epoch"]
    assert len(epochs) == 6 and epochs[-1]["loss"] < epochs[0]["loss"]
    from test_evaluate import knn_top1_of_run  # the final encoder's kNN over the whole bank, computed afresh
    assert summary["knn_top1"] == knn_top1_of_run(out) > 0.5   # 3 separable classes: chance is 1/3
    for f in ("config.json", "run.json", "checkpoint.pt"):
        assert (out / f).exists()
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "completed" and run["wall_time_s"] > 0 and "CPU" in run["device"]
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["epoch"] == 6 and ckpt["step"] == 6 * 3
    model, cfg = load_run(out)
    assert cfg.arch == "resnet10"
    h, z = model(torch.rand(2, 3, 16, 16))
    assert h.shape == (2, 64)


@pytest.mark.parametrize("progress", [False, True])
def test_no_progress_silences_the_decoding_bar_too(tiny_tree, tmp_path, monkeypatch, capsys, progress):
    """``pretrain(progress=False)`` (the CLI's ``--no-progress``) shows no bar at all, even on a terminal."""
    import sys
    monkeypatch.setenv("SIMCLR_CACHE", str(tmp_path / "cache"))     # nothing decoded yet: the bar would show
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    pretrain(tiny_cfg(tiny_tree, epochs=1, knn_every=0), None, progress=progress)
    err = capsys.readouterr().err
    assert ("decoding train" in err) is progress and ("decoding test" in err) is progress


class _FakeClock:
    """``time.time`` for train.py: one simulated second per call (a deterministic wall clock)."""

    def __init__(self) -> None:
        self.now = 1e9

    def time(self) -> float:
        self.now += 1.0
        return self.now


def test_time_budget_ends_the_schedule_and_the_run(tiny_tree, tmp_path, monkeypatch):
    """time_budget: the learning rate reaches 0 when the budget is used up, then the run stops and evaluates."""
    import simclr_lite.train as train_mod
    monkeypatch.setattr(train_mod, "time", _FakeClock())
    out = tmp_path / "run"
    summary = pretrain(tiny_cfg(tiny_tree, epochs=50, warmup_epochs=0, time_budget=0.5), out, progress=False)
    assert summary["status"] == "time_budget" and 1 < summary["steps"] < 50 * 3
    from test_evaluate import knn_top1_of_run  # the final encoder's kNN over the whole bank, computed afresh
    assert summary["wall_time_s"] >= 30 and summary["knn_top1"] == knn_top1_of_run(out) > 0.5  # chance: 1/3
    steps = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    peak = 0.5 * 24 / 256                                   # lr x B / 256
    mult = [r["lr"] / peak for r in steps if r["kind"] == "step"]
    assert all(a >= b for a, b in zip(mult, mult[1:])) and mult[0] > 0.9 and mult[-1] == pytest.approx(0, abs=1e-9)
    # far ahead of the steps' own cosine over 50 epochs: the budget, not the epochs, set the decay
    mid = len(mult) // 2
    assert mult[mid] < 0.75 < 0.5 * (1 + math.cos(math.pi * (mid + 1) / (50 * 3)))
    last = steps[-1]
    assert last["kind"] == "epoch" and last["knn_top1"] == summary["knn_top1"]
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["step"] == summary["steps"]
    assert json.loads((out / "run.json").read_text())["status"] == "time_budget"


def test_time_budget_never_reached_changes_nothing(tiny_tree, tmp_path):
    """With a budget far beyond the run, the schedule (and so the weights) are those of the epochs."""
    a = pretrain(tiny_cfg(tiny_tree, epochs=2, warmup_epochs=1), tmp_path / "a", progress=False)
    b = pretrain(tiny_cfg(tiny_tree, epochs=2, warmup_epochs=1, time_budget=1e6), tmp_path / "b", progress=False)
    assert b["status"] == "completed" and b["steps"] == a["steps"] == 6
    wa, _ = load_run(tmp_path / "a")
    wb, _ = load_run(tmp_path / "b")
    assert torch.allclose(_weights(wa), _weights(wb), atol=1e-5)


def test_resume_continues_exactly(tiny_tree, tmp_path):
    straight = pretrain(tiny_cfg(tiny_tree, epochs=3), tmp_path / "a", progress=False)
    pretrain(tiny_cfg(tiny_tree, epochs=3, time_limit=1e-9), tmp_path / "b", progress=False)  # stops after 1 step
    ck = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert ck["step"] == 1 and ck["step_in_epoch"] == 1
    resumed = pretrain(tiny_cfg(tiny_tree, epochs=3), tmp_path / "b", resume=True, progress=False)
    a, _ = load_run(tmp_path / "a")
    b, _ = load_run(tmp_path / "b")
    assert torch.equal(_weights(a), _weights(b))
    assert resumed["knn_top1"] == straight["knn_top1"]
    la = [json.loads(l) for l in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(l) for l in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    key = lambda rows: [(r["kind"], r["step"], round(r.get("loss", 0), 6)) for r in rows]  # noqa: E731
    # b's log holds one extra line: the evaluation when its time limit stopped it at step 1
    assert lb[1]["kind"] == "epoch" and lb[1]["step"] == 1 and "knn_top1" in lb[1]
    assert key(la) == key(lb[:1] + lb[2:])


def test_refuses_to_overwrite_a_run(tiny_tree, tmp_path):
    pretrain(tiny_cfg(tiny_tree, epochs=1), tmp_path / "r", progress=False)
    before = (tmp_path / "r" / "checkpoint.pt").read_bytes()
    with pytest.raises(ConfigError, match="already holds a run"):
        pretrain(tiny_cfg(tiny_tree, epochs=1), tmp_path / "r", progress=False)
    with pytest.raises(ConfigError, match=r"was run with temperature=0\.5, not 0\.2; resume with the same settings"):
        pretrain(tiny_cfg(tiny_tree, epochs=2, temperature=0.2), tmp_path / "r", resume=True, progress=False)
    assert (tmp_path / "r" / "checkpoint.pt").read_bytes() == before


def test_nan_loss_stops_with_step_and_keeps_checkpoint(tiny_tree, tmp_path, monkeypatch):
    out = tmp_path / "nan"
    pretrain(tiny_cfg(tiny_tree, epochs=1), out, progress=False)
    before = (out / "checkpoint.pt").read_bytes()
    from simclr_lite.losses import LOSSES
    real = LOSSES["nt_xent"]
    calls = {"n": 0}

    @functools.wraps(real)
    def flaky(*a, **k):
        calls["n"] += 1
        loss = real(*a, **k)
        return loss * float("nan") if calls["n"] == 2 else loss
    monkeypatch.setitem(LOSSES, "nt_xent", flaky)
    with pytest.raises(TrainingError, match=r"NaN/inf at step 4 .*--lr.*--temperature"):
        pretrain(tiny_cfg(tiny_tree, epochs=2), out, resume=True, extend=True, progress=False)
    assert (out / "checkpoint.pt").read_bytes() == before


def test_real_cifar_subset_smoke(tmp_path):
    root = real_cifar_root()
    if root is None:
        pytest.skip("the CIFAR-10 copy is not here")
    cfg = preset("cifar10-smoke", data=str(root), train_limit=1024, test_limit=256, epochs=2, device="cpu")
    summary = pretrain(cfg, tmp_path / "cifar", progress=False)
    lines = [json.loads(l) for l in (tmp_path / "cifar" / "metrics.jsonl").read_text().splitlines()]
    epochs = [l for l in lines if l["kind"] == "epoch"]
    assert epochs[-1]["loss"] < epochs[0]["loss"]
    assert summary["knn_top1"] > 0.15  # above chance (0.10) on real images


def test_compile_failure_falls_back_to_eager(tiny_tree, monkeypatch, capsys):
    eager = pretrain(tiny_cfg(tiny_tree, epochs=1), None, progress=False)

    def broken_compile(module):
        def call(x):
            raise RuntimeError("no C++ compiler found")
        return call
    monkeypatch.setattr(torch, "compile", broken_compile)
    fallback = pretrain(tiny_cfg(tiny_tree, epochs=1, compile=True), None, progress=False)
    assert "torch.compile failed" in capsys.readouterr().err
    assert torch.equal(_weights(eager["model"]), _weights(fallback["model"]))


def test_custom_augment_per_view_is_used(tiny_tree):
    """``augment=(f_a, f_b)`` replaces SimCLRAugment, one callable per view (the book's Fig. 5 grid)."""
    calls = {"a": 0, "b": 0}

    def view(name):
        def f(x, generator=None):
            calls[name] += 1
            return x.float().div(255)
        return f
    s = pretrain(tiny_cfg(tiny_tree, epochs=1, knn_every=0), progress=False, augment=(view("a"), view("b")))
    assert calls["a"] == calls["b"] == 8 * s["steps"] > 0   # aug_shards=0: 8 parts of the batch of 24
    assert [r for r in s["history"] if r["kind"] == "epoch"] and "model" in s
    with pytest.raises(ConfigError, match="pair of callables"):
        pretrain(tiny_cfg(tiny_tree, epochs=1), progress=False, augment=(view("a"),))


@pytest.mark.parametrize("loss,extra", [("nt_xent", dict(normalize=False, temperature=10.0)),
                                        ("nt_logistic", dict(semi_hard=True, normalize=False, temperature=2.0)),
                                        ("margin_triplet", dict(semi_hard=True, margin=0.4)),
                                        ("margin_triplet", dict(margin=0.4))])
def test_loss_variants_of_tables_4_and_5_train(tiny_tree, loss, extra, monkeypatch):
    """The loss is chosen through the LOSSES registry, and Config's temperature / normalize / semi_hard /
    margin reach it as the keywords its signature names."""
    import functools

    from simclr_lite.losses import LOSSES
    seen = {}
    for name, fn in list(LOSSES.items()):
        @functools.wraps(fn)
        def spy(*a, _fn=fn, _name=name, **k):
            seen[_name] = k
            return _fn(*a, **k)
        monkeypatch.setitem(LOSSES, name, spy)
    s = pretrain(tiny_cfg(tiny_tree, epochs=1, knn_every=0, loss=loss, **extra), progress=False)
    assert s["status"] == "completed" and list(seen) == [loss]
    expected = {"nt_xent": dict(temperature=10.0, normalize=False, group=0),
                "nt_logistic": dict(temperature=2.0, normalize=False, semi_hard=True),
                "margin_triplet": dict(margin=0.4, semi_hard=extra.get("semi_hard", False))}[loss]
    assert seen[loss] == expected


def _imagenet_like(root):
    """A train/ + val/ tree of mixed sizes and modes (the streaming loader's input)."""
    return mixed_mode_tree(root, train_per_class=24, test_per_class=8, sizes=(18, 40), seed=1)


def test_stream_loader_trains_resumes_exactly_and_evaluates(tmp_path):
    """loader=stream: decoding in DataLoader workers, same training semantics as memory (resume is exact)."""
    root = _imagenet_like(tmp_path / "in")
    cfg = lambda **kw: tiny_cfg(root, loader="stream", workers=2, image_size=16, decode_size=18,  # noqa: E731
                                epochs=2, batch_size=16, knn_every=0, **kw)
    straight = pretrain(cfg(), tmp_path / "a", progress=False)
    assert straight["status"] == "completed" and straight["steps"] == 6 and straight["test_images"] == 16
    from test_evaluate import knn_top1_of_run  # the final encoder's kNN over the whole bank, computed afresh
    assert straight["knn_top1"] == knn_top1_of_run(tmp_path / "a") > 0.75   # 2 classes: chance is 0.5
    pretrain(cfg(time_limit=1e-9), tmp_path / "b", progress=False)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["step"] == 1
    pretrain(cfg(), tmp_path / "b", resume=True, progress=False)
    a, _ = load_run(tmp_path / "a")
    b, _ = load_run(tmp_path / "b")
    assert torch.equal(_weights(a), _weights(b))
    with pytest.raises(ConfigError, match="cannot be combined with loader=stream"):
        pretrain(cfg(), progress=False, data=(torch.zeros(4, 3, 16, 16, dtype=torch.uint8),) * 4)
    from simclr_lite.__main__ import main
    assert main(["evaluate", str(tmp_path / "a"), "--data", str(root), "--protocol", "knn", "--k", "5", "--device", "cpu"]) == 0
    ev = json.loads((tmp_path / "a" / "eval.json").read_text())
    assert ev["test_images"] == 16 and ev["top1"] == knn_top1_of_run(tmp_path / "a", k=5) > 0.75  # chance: 0.5
    assert main(["evaluate", str(tmp_path / "a"), "--data", str(root), "--protocol", "finetune", "--device", "cpu"]) == 2


def test_stream_and_memory_loaders_see_the_same_images_per_step(tmp_path, monkeypatch):
    """With decode_size == image_size the two loaders feed identical uint8 batches in identical order."""
    import simclr_lite.train as T
    root = _imagenet_like(tmp_path / "in")
    seen: dict[str, list] = {"memory": [], "stream": []}
    real = T.SimCLRAugment.forward

    def spy(self, x, generator=None):
        seen[mode].append(x.clone())
        return real(self, x, generator)
    monkeypatch.setattr(T.SimCLRAugment, "forward", spy)
    for mode in ("memory", "stream"):
        pretrain(tiny_cfg(root, loader=mode, workers=0, image_size=16, decode_size=16, epochs=1,
                          batch_size=16, knn_every=0), progress=False)
    assert len(seen["memory"]) == len(seen["stream"]) > 0
    assert all(torch.equal(a, b) for a, b in zip(seen["memory"], seen["stream"]))


HOST_READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__")


def _count_host_reads(monkeypatch) -> dict[str, int]:
    """Count the reads of tensor values by simclr_lite's own code (on a GPU, each one waits for the device)."""
    import sys
    counts: dict[str, int] = {}
    for name in HOST_READS:
        real = getattr(torch.Tensor, name)

        def counted(self, *a, _real=real, _name=name, **k):
            if "simclr_lite" in sys._getframe(1).f_code.co_filename:
                counts[_name] = counts.get(_name, 0) + 1
            return _real(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, name, counted)
    return counts


def test_steady_state_steps_read_nothing_back_from_the_device(tiny_tree, monkeypatch):
    """Issue 16: between log lines a step makes no host sync. Runs of 3 and 9 steps (batch 24 and 8,
    NaN check and log line every 1000 steps) read tensor values equally often: only at the epoch's end,
    for the checkpoint, the log line and the kNN monitor; none per step."""
    seen = []
    for batch in (24, 8):
        counts = _count_host_reads(monkeypatch)
        s = pretrain(tiny_cfg(tiny_tree, epochs=1, batch_size=batch, aug_shards=1, knn_every=0, log_every=1000,
                              nan_check_every=1000), progress=False)
        monkeypatch.undo()
        assert s["steps"] == 72 // batch
        seen.append(counts)
    assert seen[0] == seen[1] and seen[0], seen


def test_several_processes_share_their_stop_decision_every_sync_every_steps(monkeypatch):
    """With several processes the stop flags and the time budget's clock are all-reduced (a host sync)
    only every ``every`` steps; alone, never."""
    import simclr_lite.train as T
    calls = []
    monkeypatch.setattr(T.D, "all_max", lambda *v, device=None: calls.append(v) or v)
    cfg = Config(time_budget=1.0)
    stop = T.Stop(cfg, world_size=2, every=4, device=torch.device("cpu"))
    for step in range(1, 13):
        now = stop.after_step(step, 30.0 * step)
        assert now == (step >= 2 and step % 4 == 0)                # stops at the first shared step past 60 s
        assert stop.time_fraction == 0.5 * 4 * (step // 4)          # the clock moves at shared steps only
        assert stop.reason == ("time_budget" if now else stop.reason)
    assert len(calls) == 3
    calls.clear()
    alone = T.Stop(cfg, world_size=1, every=4, device=torch.device("cpu"))
    assert alone.after_step(5, 30.0) is False
    assert not calls and alone.time_fraction == 0.5 and alone.reason is None   # alone: local, every step


def test_no_helper_in_train_takes_more_than_six_parameters():
    """Issue 29: the loop reads as Algorithm 1; what its helpers share travels in RunState, Stop, Parts."""
    import ast
    import inspect

    import simclr_lite.train as T
    tree = ast.parse(inspect.getsource(T))
    wide = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name != "pretrain":
            names = [a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs
                     if a.arg not in ("self", "cls")]
            if len(names) > 6:
                wide[node.name] = len(names)
    assert not wide, wide
    assert len([n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]) > 10   # it did look at them


def test_resume_with_another_thread_count_says_it_is_not_exact(tiny_tree, tmp_path, capsys):
    """Issue 28: float results depend on the thread count in the last bits; a resume with another count
    warns (and the run cache keys on it: tests/test_cache.py)."""
    before = torch.get_num_threads()
    try:
        pretrain(tiny_cfg(tiny_tree, epochs=2, time_limit=1e-9, threads=1), tmp_path / "r", progress=False)
        capsys.readouterr()
        pretrain(tiny_cfg(tiny_tree, epochs=2, threads=2), tmp_path / "r", resume=True, progress=False)
        err = capsys.readouterr().err
        assert "trained with 1 CPU threads and resumes with 2" in err and "--threads 1" in err, err
        pretrain(tiny_cfg(tiny_tree, epochs=2, time_limit=1e-9, threads=1), tmp_path / "s", progress=False)
        capsys.readouterr()
        pretrain(tiny_cfg(tiny_tree, epochs=2, threads=1), tmp_path / "s", resume=True, progress=False)
        assert "threads" not in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)
