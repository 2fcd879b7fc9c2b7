"""simclr_book.plan: the book's parts at the gpu budget fit 9 minutes each and 90 in all (estimates)."""
from __future__ import annotations

import dataclasses

import pytest

from simclr_book.budget import budget_sizes
from simclr_book.plan import (BOOK_CAP_MIN, DEVICES, PART_CAP_MIN, arm_minutes, chapter_plan, main, ordered_parts,
                              part_minutes, plan, this_device)
from simclr_book.specs import PARTS

GPUS = [d for d in DEVICES.values() if d.budget == "gpu"]


@pytest.mark.parametrize("device", GPUS, ids=lambda d: d.name)
def test_every_part_fits_the_cap_on_each_gpu(device):
    gpu = budget_sizes("gpu")
    over = {p.name: round(part_minutes(p, gpu, device), 1) for p in PARTS.values()
            if part_minutes(p, gpu, device) > PART_CAP_MIN}
    assert not over, f"parts over {PART_CAP_MIN} min on {device.name}: {over}"
    total = sum(part_minutes(p, gpu, device) for p in PARTS.values())
    assert total <= BOOK_CAP_MIN, total


def test_the_estimate_grows_with_what_an_arm_trains():
    gpu, h100 = budget_sizes("gpu"), DEVICES["NVIDIA H100"]
    part = PARTS["ch02-table1"]
    arm = part.arm("s0.5")
    longer = dataclasses.replace(arm, overrides={**arm.overrides, "epochs": 30})
    assert arm_minutes(part, longer, gpu, h100) > 1.9 * (arm_minutes(part, arm, gpu, h100) - h100.eval_s / 60)
    wide = PARTS["ch04-fig7"]
    assert arm_minutes(wide, wide.arm("w"), gpu, h100) > arm_minutes(wide, wide.arm("w/4"), gpu, h100)
    assert arm_minutes(wide, wide.arm("deeper"), gpu, h100) > arm_minutes(wide, wide.arm("w"), gpu, h100)
    assert arm_minutes(part, part.arm("sup-s0.5"), gpu, h100) < arm_minutes(part, arm, gpu, h100)


def test_the_plan_lists_every_part_in_the_gpu_order(capsys):
    names = [p.name for p in ordered_parts()]
    assert sorted(names) == sorted(PARTS) and names[0] == "ch05-fig9"
    assert names.index("ch04-fig8-seed0") < names.index("ch02-table1") < names.index("ch04-fig7") \
        < names.index("ch03-table5") < names.index("ch06-evaluation")
    records = plan(budget_sizes("gpu"), DEVICES["NVIDIA H200"])
    assert [r["part"] for r in records] == names
    assert all(a["cached"] is None for r in records for a in r["arms"])     # no data given: not checked
    main(["--budget", "gpu"])
    out = capsys.readouterr().out
    assert "plan at the gpu budget on NVIDIA H100" in out and all(p in out for p in PARTS)
    assert "all 14 parts" in out or f"all {len(PARTS)} parts" in out


def test_a_chapter_prints_only_its_parts_and_what_is_left_to_train(monkeypatch):
    import simclr_book.plan as plan_mod
    cpu = budget_sizes("cpu")
    text = chapter_plan(5, cpu)
    assert text.startswith("chapter 5 at the cpu budget on 2 CPU cores")
    assert "ch05-fig9" in text and "ch05-negatives" in text and "ch02-table1" not in text
    assert "the run cache was not checked" in text
    assert chapter_plan(99, cpu).startswith("chapter 99 has no part")
    # with the cache checked, cached seeds cost nothing: all cached -> 0 min left; none cached -> the estimate
    checked = []
    monkeypatch.setattr(plan_mod, "is_cached", lambda part, *a: checked.append(part.chapter) or True)
    assert chapter_plan(7, cpu, data=object()).endswith("about 0 min of training left, 2 arms at a time")
    assert checked and set(checked) == {7}        # only the chapter's own parts are looked up in the cache
    monkeypatch.setattr(plan_mod, "is_cached", lambda *a: False)
    left = float(chapter_plan(7, cpu, data=object()).rsplit("about ", 1)[1].split(" min")[0])
    part = PARTS["ch07-scaling"]
    dev = DEVICES["2 CPU cores"]          # a part's arms train dev.workers at a time
    assert dev.workers == 2
    assert left == pytest.approx(sum(arm_minutes(part, a, cpu, dev) for a in part.arms) / dev.workers, abs=0.5)


def test_this_device_is_the_budgets_default_without_a_gpu():
    assert this_device(budget_sizes("cpu")).name == "2 CPU cores"
    assert this_device(budget_sizes("smoke")).name == "2 CPU cores (smoke)"
