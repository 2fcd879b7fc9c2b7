"""simclr_book.fullscale: a part's runs, its results file, and the verdicts and cells read from it."""
from __future__ import annotations

import json

import numpy as np
import pytest

from simclr_book.fullscale import decide, fullscale_cell, main, read_results
from simclr_book.specs import FINDINGS, PARTS, Row, finding_of
from simclr_book.verdict import FLOOR, PAPER, SEEDS, Verdict, compare, compare_gains

from conftest import real_cifar_root


def _results(part: str, arms: dict[tuple[str, int], dict[str, float]], budget: str = "gpu",
             floors: dict[str, float] | None = None) -> dict:
    return {"part": part, "budget": budget, "device": "NVIDIA H200 (test)", "test_images": 10_000,
            "floors": floors or {"pixels_knn": 0.35, "pixels_linear": 0.40, "random_knn": 0.30, "random_linear": 0.35},
            "arms": [{"arm": a, "seed": s, **m} for (a, s), m in arms.items()]}


def test_decide_is_the_one_rule_on_the_parts_numbers():
    row = Row("r", "x:linear", "y:linear", "paper")
    res = _results("p", {("x", 0): {"linear": 0.62}, ("y", 0): {"linear": 0.55},
                         ("x", 1): {"linear": 0.63}, ("y", 1): {"linear": 0.56},
                         ("x", 2): {"linear": 0.61}, ("y", 2): {"linear": 0.57}})
    v = decide(row, [res])
    ref = compare("r", [0.62, 0.63, 0.61], [0.55, 0.56, 0.57], 10_000, floor=0.40)
    assert v.gap == pytest.approx(ref.gap) and v.bar == pytest.approx(ref.bar) and v.status == ref.status == PAPER
    assert v.floor == pytest.approx(0.40) and v.seeds == 3


def test_decide_pairs_seeds_and_applies_the_floor_of_its_kind():
    row = Row("r", "x:knn", "y:knn", "paper")
    res = _results("p", {("x", 0): {"knn": 0.34}, ("y", 0): {"knn": 0.20}, ("x", 1): {"knn": 0.5}})
    v = decide(row, [res])
    assert v.seeds == 1 and v.status == FLOOR and v.floor == pytest.approx(0.35)   # kNN floor: pixels 0.35
    assert decide(Row("r", "x:knn", "z:knn", "p"), [res]) is None                   # arm z never measured


def test_decide_gains_against_supervised_holds_only_simclr_to_the_floor():
    row = Row("g", "a:linear", "b:linear", "p", vs=("sa:top1", "sb:top1"))
    res = _results("p", {("a", 0): {"linear": 0.66}, ("b", 0): {"linear": 0.55},
                         ("sa", 0): {"top1": 0.30}, ("sb", 0): {"top1": 0.29}})
    v = decide(row, [res])
    ref = compare_gains("g", [0.66], [0.55], [0.30], [0.29], 10_000)
    assert v.gap == pytest.approx(ref.gap) and v.status == PAPER      # supervised 30% is not held to 40%


def test_cells_say_not_measured_with_the_command(tmp_path):
    f = finding_of(3)
    cell = fullscale_cell(f, f.rows[0], root=tmp_path)
    assert cell == "not measured yet: `python -m simclr_book.fullscale ch02-table1`"
    assert fullscale_cell(finding_of(2), Row("x", "a:knn", "b:knn", "p"), root=tmp_path).startswith(
        "no full-scale part (no training")


def test_cells_read_the_results_file(tmp_path):
    f = finding_of(3)
    arms = {(a.name, 0): ({"top1": 0.8} if a.kind == "supervised" else {"linear": 0.6 + 0.01 * i})
            for i, a in enumerate(PARTS["ch02-table1"].arms)}
    (tmp_path / "ch02-table1.json").write_text(json.dumps(_results("ch02-table1", arms)))
    cell = fullscale_cell(f, f.rows[0], root=tmp_path)       # s = 1/8 -> 1/2: 60% -> 62%
    assert cell.startswith("62.0% vs 60.0%, +2.0 (bar") and "1 seed" in cell and "NVIDIA H200 (test)" in cell
    assert SEEDS in cell                                       # one seed, under 2x the test-set bar
    (tmp_path / "ch02-table1.json").write_text(json.dumps(_results("ch02-table1", arms, budget="smoke")))
    assert read_results("ch02-table1", tmp_path) is None        # only full-scale files count
    assert fullscale_cell(f, f.rows[0], root=tmp_path).startswith("not measured yet")


def test_below_the_gpu_budget_a_results_file_needs_out():
    with pytest.raises(SystemExit, match="--out"):
        main(["ch05-lr", "--budget", "smoke"])


@pytest.mark.skipif(real_cifar_root() is None, reason="needs the CIFAR-10 copy (SIMCLR_DATA)")
def test_a_part_at_smoke_end_to_end(tmp_path, monkeypatch):
    """ch05-lr at smoke on real CIFAR-10: the results file, its verdict records, and a second run that
    loads every arm from the run cache."""
    monkeypatch.setenv("SIMCLR_DATA", str(real_cifar_root()))
    monkeypatch.setenv("SIMCLR_CACHE", str(tmp_path / "cache"))
    out = main(["ch05-lr", "--budget", "smoke", "--out", str(tmp_path / "r.json")])
    res = json.loads(out.read_text())
    assert res["budget"] == "smoke" and res["part"] == "ch05-lr" and [a["arm"] for a in res["arms"]] == ["linear", "sqrt"]
    assert all(0 < a["linear"] < 1 and 0 < a["knn"] < 1 and not a["cached"] for a in res["arms"])
    assert set(res["floors"]) == {"pixels_knn", "pixels_linear", "random_knn", "random_linear"}
    [v] = res["verdicts"]
    assert v["finding"] == 12 and Verdict.from_dict({k: x for k, x in v.items() if k != "finding"}).n == res["test_images"]
    assert str(tmp_path) not in out.read_text()               # no machine paths in a results file
    again = json.loads(main(["ch05-lr", "--budget", "smoke", "--out", str(tmp_path / "r2.json")]).read_text())
    assert all(a["cached"] for a in again["arms"]) and [a["linear"] for a in again["arms"]] == \
        [a["linear"] for a in res["arms"]]


def test_every_finding_row_has_a_cell(tmp_path):
    """Issue 30: every findings row shows a full-scale cell or the command that measures it."""
    for f in FINDINGS:
        for row in f.rows:
            assert fullscale_cell(f, row, root=tmp_path).startswith("not measured yet: `python -m simclr_book.fullscale ")


# ---------------------------------------------------------------------------------------- chapter 4's helpers
def test_part_results_has_the_results_files_layout_and_decides_like_it(monkeypatch):
    """A chapter's part at its budget (part_results) is read by decide() as a results file is."""
    import torch

    import simclr_book.fullscale as fs
    from simclr_book.budget import budget_sizes
    calls = []

    def fake_arm(part, arm, budget, seed, data):
        calls.append((arm, seed))
        lin = {"head-nonlinear": 0.60, "head-linear": 0.55, "head-none": 0.50}[arm] + 0.001 * seed
        return {"arm": arm, "seed": seed, "kind": "shared", "linear": lin, "linear_z": lin - 0.05, "knn": lin,
                "knn_z": lin, "cached": True, "train_s": 10.0, "config": {"seed": seed, "head": arm}}
    monkeypatch.setattr(fs, "arm_result", fake_arm)
    monkeypatch.setenv("SIMCLR_WORKERS", "1")        # every arm in this process (train_missing: tests below)
    monkeypatch.setattr(fs, "floors", lambda b, d: {"pixels_knn": 0.4, "pixels_linear": 0.35,
                                                   "random_knn": 0.3, "random_linear": 0.3})
    data = (torch.zeros(100, 1), torch.zeros(100), torch.zeros(10_000, 1), torch.zeros(10_000))
    cpu = budget_sizes("cpu")
    results = {p: fs.part_results(p, cpu, data) for p in ("ch04-fig8-seed0", "ch04-fig8-seed1", "ch04-fig8-seed2")}
    assert calls[:3] == [("head-nonlinear", 0), ("head-linear", 0), ("head-none", 0)]
    assert ("head-none", 1) not in calls and ("head-linear", 2) in calls
    res = results["ch04-fig8-seed0"]
    assert res["test_images"] == 10_000 and res["budget"] == "cpu" and all(r["measure_s"] >= 0 for r in res["arms"])
    rows = dict((row.label, v) for row, v in fs.finding_rows(finding_of(5), results))
    nl_li, nl_no, hz = rows.values()
    assert nl_li.seeds == 3 and nl_no.seeds == 1 and hz.seeds == 3                # no head: seed 0 only
    assert nl_no.gap == pytest.approx(10.0) and nl_no.status == PAPER            # 10 points >= 2 x test-set bar
    assert nl_li.floor == pytest.approx(0.35)                                      # the linear floor


def test_loaded_seconds_counts_each_run_once_and_estimates_what_was_not_recorded(monkeypatch):
    from simclr_book.budget import budget_sizes
    from simclr_book.fullscale import loaded_seconds
    from simclr_book.plan import DEVICES, TSNE_S, arm_minutes
    cpu, dev = budget_sizes("cpu"), DEVICES["2 CPU cores"]
    main = {"arm": "head-nonlinear", "seed": 0, "kind": "shared", "config": {"x": 1}, "train_s": 1000.0}
    results = [
        {"part": "ch04-tsne", "arms": [{**main, "cached": True, "measure_s": 1.0, "tsne": {}}]},   # all loaded
        {"part": "ch04-fig8-seed0", "arms": [
            {**main, "cached": True, "measure_s": 1.0},                                 # the same run again
            {"arm": "head-none", "seed": 0, "kind": "shared", "config": {"x": 2}, "train_s": 900.0,
             "cached": False, "measure_s": 950.0}]},                                    # trained now
        {"part": "ch04-fig7", "arms": [
            {"arm": "sup-w", "seed": 0, "kind": "supervised", "config": {"x": 3}, "train_s": None, "cached": True}]},
    ]
    out = loaded_seconds(results, cpu)
    fig7 = PARTS["ch04-fig7"]
    sup = 60 * arm_minutes(fig7, fig7.arm("sup-w"), cpu, dev)
    assert out["shared"] == pytest.approx(1900.0)                     # both shared models, loaded or not
    # a shared model trains alone; the other arms dev.workers at a time (2 on 2 CPU cores)
    assert dev.workers == 2
    assert out["loaded"] == pytest.approx(1000.0 + 2 * dev.eval_s + TSNE_S["cpu"] + sup / dev.workers)


def test_arm_run_loads_the_run_that_arm_result_measures(monkeypatch):
    """arm_run asks the run cache for the same config, name and views as arm_result."""
    import torch

    import simclr_book.fullscale as fs
    from simclr_book.budget import budget_sizes
    seen = []

    class Stop(Exception):
        pass

    def fake_pretrain(cfg, data, name, augment=None, augment_key=None, **kw):
        seen.append((cfg, name, augment_key))
        raise Stop
    monkeypatch.setattr(fs.cache, "cached_pretrain", fake_pretrain)
    data = (torch.zeros(4, 1), torch.zeros(4), torch.zeros(4, 1), torch.zeros(4))
    smoke = budget_sizes("smoke")
    cases = (("ch04-fig8-seed1", "head-linear", 1), ("ch04-fig7", "w/4", 2), ("ch02-fig5", "crop>color", 0))
    for part, arm, seed in cases:
        for f in (fs.arm_result, fs.arm_run):
            with pytest.raises(Stop):
                f(PARTS[part], arm, smoke, seed, data)
        assert seen[-1] == seen[-2], (part, arm)
    assert seen[0][1] == "smoke-linear-head-seed1" and seen[0][0].seed == 1
    with pytest.raises(ValueError, match="supervised"):
        fs.arm_run(PARTS["ch04-fig7"], "sup-w", smoke, 0, data)


def test_evaluate_run_is_computed_once(tmp_path, monkeypatch):
    import torch

    import simclr_book.fullscale as fs
    monkeypatch.setenv("SIMCLR_CACHE", str(tmp_path))
    n = []
    monkeypatch.setattr(fs, "evaluate_model",
                        lambda model, data, device, hz: n.append(hz) or {"knn": 0.5, "linear": 0.6})
    run = {"folder": str(tmp_path / "runs" / "smoke-x-0123"), "model": None}
    data = (torch.zeros(4, 1), torch.zeros(4), torch.zeros(4, 1), torch.zeros(4))
    assert fs.evaluate_run(run, data, "cpu") == {"knn": 0.5, "linear": 0.6}
    assert fs.evaluate_run(run, data, "cpu") == {"knn": 0.5, "linear": 0.6} and n == [False]


def test_tsne_metrics_measures_h_and_z_in_the_original_spaces_and_keeps_the_maps(monkeypatch):
    import torch

    import simclr_book.fullscale as fs
    from simclr_lite.models import build_simclr
    monkeypatch.setattr(fs, "TSNE_IMAGES", 60)
    monkeypatch.setattr(fs, "TSNE_SEEDS", (0, 1))
    torch.manual_seed(0)
    model = build_simclr("resnet10", 0.125, True, "nonlinear", 16, 2, 32).eval()
    x = (torch.rand(80, 3, 32, 32) * 255).to(torch.uint8)
    y = torch.arange(80) % 4
    out = fs.tsne_metrics(model, (x, y, x, y), "cpu")
    assert out["images"] == 60 and len(out["labels"]) == 60 and set(out["labels"]) == {0, 1, 2, 3}
    lo, hi = out["difference_95"]
    assert lo <= hi
    for key in ("h", "z"):
        r = out[key]
        assert -1 <= r["cosine_silhouette_95"][0] <= r["cosine_silhouette_95"][1] <= 1
        assert len(r["tsne_silhouette"]) == 2 and len(r["maps"]) == 2
        assert np.asarray(r["maps"][0]).shape == (60, 2)
        assert not np.allclose(r["maps"][0], r["maps"][1]), "two t-SNE seeds gave the same map"


# ---------------------------------------------------------------------------------------- arms side by side
def test_arm_workers_is_one_per_core_at_cpu_only_and_obeys_simclr_workers(monkeypatch):
    import simclr_book.fullscale as fs
    from dataclasses import replace

    from simclr_book.budget import budget_sizes
    monkeypatch.delenv("SIMCLR_WORKERS", raising=False)
    monkeypatch.setattr(fs, "_cores", lambda: 2)
    cpu = budget_sizes("cpu")
    assert fs.arm_workers(cpu, 12) == 2 and fs.arm_workers(cpu, 1) == 1
    monkeypatch.setattr(fs, "_cores", lambda: 16)
    assert fs.arm_workers(cpu, 12) == 4                        # at most 4 (memory), one thread share each
    assert fs.arm_workers(budget_sizes("smoke"), 12) == 1      # smoke arms take seconds
    assert fs.arm_workers(replace(cpu, device="cuda"), 12) == 1
    monkeypatch.setenv("SIMCLR_WORKERS", "3")
    assert fs.arm_workers(budget_sizes("smoke"), 12) == 3 and fs.arm_workers(cpu, 2) == 2
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("SIMCLR_WORKERS", bad)
        with pytest.raises(ValueError, match="SIMCLR_WORKERS"):
            fs.arm_workers(cpu, 12)


def test_train_missing_trains_each_missing_arm_once_in_worker_processes(monkeypatch, tmp_path):
    """Two worker processes train part ch05-lr's two smoke arms into the run cache; the part then loads
    them (cached, the same numbers a second time), and nothing is left for a second call to train."""
    import json

    import torch

    import simclr_book.fullscale as fs
    from simclr_book.budget import budget_sizes
    monkeypatch.setenv("SIMCLR_CACHE", str(tmp_path))
    g = torch.Generator().manual_seed(0)
    data = (torch.randint(0, 256, (256, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(256) % 10,
            torch.randint(0, 256, (100, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(100) % 10)
    smoke = budget_sizes("smoke")
    done = fs.train_missing("ch05-lr", smoke, data, workers=2)
    assert set(done) == {("linear", 0), ("sqrt", 0)} and all(t > 0 and trained for t, trained in done.values())
    runs = sorted(p for p in (tmp_path / "runs").iterdir() if not p.name.startswith("."))
    assert len(runs) == 2 and all(json.loads((p / "run.json").read_text())["threads"] == 1 for p in runs)
    assert fs.train_missing("ch05-lr", smoke, data, workers=2) == {}         # nothing left to train
    res = fs.part_results("ch05-lr", smoke, data, workers=2)
    assert [r["cached"] for r in res["arms"]] == [True, True]                # loaded, not trained again
    again = fs.part_results("ch05-lr", smoke, data, workers=1)
    assert [r["linear"] for r in again["arms"]] == [r["linear"] for r in res["arms"]]


def test_pretrain_side_by_side_trains_only_the_missing_chapter_arms_in_workers(monkeypatch, tmp_path):
    """Chapter 3's validation grid: two workers train the two smoke arms the cache lacks (each name once);
    train_arm then loads the same runs, and a second call has nothing to train. One worker, or nothing to
    do, trains nothing there (the chapter trains in its own process)."""
    import torch

    import simclr_book.fullscale as fs
    from simclr_book.budget import budget_sizes, train_arm
    monkeypatch.setenv("SIMCLR_CACHE", str(tmp_path))
    g = torch.Generator().manual_seed(0)
    data = (torch.randint(0, 256, (128, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(128) % 10,
            torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(50) % 10)
    smoke = budget_sizes("smoke")
    runs = [("t-tau0.1", dict(temperature=0.1, epochs=1)), ("t-tau0.5", dict(temperature=0.5, epochs=1))]
    assert fs.pretrain_side_by_side(runs, smoke, data, workers=1) == set()        # one worker: not here
    assert not any((tmp_path / "runs").glob("*/run.json"))
    assert fs.pretrain_side_by_side(runs, smoke, data, workers=2) == {"t-tau0.1", "t-tau0.5"}
    assert all(train_arm(n, smoke, data, **kw)["cached"] for n, kw in runs)     # loaded, not trained again
    assert fs.pretrain_side_by_side(runs, smoke, data, workers=2) == set()        # nothing left
    assert fs.side_by_side([], smoke, data, workers=2) is None


def test_a_supervised_arm_named_with_a_slash_is_one_file_that_the_plan_finds(monkeypatch, tmp_path):
    """Fig. 7's supervised arm w/4: its result is a file of the results folder (not a folder 'w'), so the
    plan sees it cached."""
    import torch

    import simclr_book.fullscale as fs
    import simclr_lite.evaluate as ev
    from simclr_book.budget import budget_sizes
    from simclr_book.plan import is_cached
    monkeypatch.setenv("SIMCLR_CACHE", str(tmp_path))
    monkeypatch.setattr(ev, "fine_tune", lambda *a, **k: {"top1": 0.5})
    data = (torch.zeros(64, 3, 32, 32, dtype=torch.uint8), torch.arange(64) % 10,
            torch.zeros(20, 3, 32, 32, dtype=torch.uint8), torch.arange(20) % 10)
    smoke, part = budget_sizes("smoke"), PARTS["ch04-fig7"]
    assert not is_cached(part, part.arm("sup-w/4"), smoke, 0, data)
    assert fs.arm_result(part, "sup-w/4", smoke, 0, data)["top1"] == 0.5
    assert [p.is_file() for p in (tmp_path / "results").iterdir()] == [True]
    assert is_cached(part, part.arm("sup-w/4"), smoke, 0, data)


def test_decided_rows_are_finding_rows_with_the_cell_a_chapter_prints(monkeypatch):
    """decided_rows: the rows finding_rows decides (undecided ones left out), with 'a vs b' means, or the
    two gains of a gain-against-gain row."""
    import simclr_book.fullscale as fs
    from simclr_book.budget import pct
    recs = [{"arm": a, "seed": s, "linear": v + 0.001 * s} for s in (0, 1, 2)
            for a, v in (("b256-short", 0.47), ("b1024-short", 0.50), ("b256-long", 0.52), ("b1024-long", 0.53))]
    results = {"ch05-fig9": {"test_images": 10_000, "floors": {"pixels_linear": 0.3, "random_linear": 0.3},
                             "arms": recs}}
    rows = fs.decided_rows(11, results)                       # the negatives row has no results: left out
    assert [row.label for row, _, _ in rows] == [r.label for r in finding_of(11).rows[:2]]
    (r1, v1, ours1), (r2, v2, ours2) = rows
    assert ours1 == f"{pct(v1.a)} vs {pct(v1.b)}" and v1.gap == pytest.approx(3.0)
    assert ours2 == f"gains {100 * v2.a:+.1f} vs {100 * v2.b:+.1f} points" and r2.vs
