"""simclr_lite.cache: a run trained once and loaded back, keyed by what it computes."""
from __future__ import annotations

import ast

import pytest
import torch

from simclr_lite import cache
from simclr_lite.cache import _strip_docstrings, cached_pretrain, code_fingerprint, run_key
from simclr_lite.config import Config


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
    assert run_key(tiny_cfg(log_every=5, threads=1, data="/elsewhere"), data) == k
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
    assert [p for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def test_a_second_process_waits_for_the_first_and_loads_its_run(tmp_path):
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.starmap(_train_in_child, [(str(tmp_path),), (str(tmp_path),)])
    assert sorted(results) == [False, True]          # one trained, the other loaded what it trained
    assert len([p for p in tmp_path.iterdir() if not p.name.startswith(".")]) == 1


def _train_in_child(root: str) -> bool:
    import time

    import simclr_lite.train as train
    real = train.pretrain

    def slow(*a, **k):            # long enough that the other process asks while this one trains
        time.sleep(2)
        return real(*a, **k)
    train.pretrain = slow
    torch.set_num_threads(1)
    return cached_pretrain(tiny_cfg(), tiny_data(), name="t", root=root)["cached"]
