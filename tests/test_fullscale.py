"""simclr_book.fullscale: a part's runs, its results file, and the verdicts and cells read from it."""
from __future__ import annotations

import json

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
