"""simclr_book.plan: the book's parts at the gpu budget fit 9 minutes each and 90 in all (estimates)."""
from __future__ import annotations

import dataclasses

import pytest

from simclr_book.budget import budget_sizes
from simclr_book.plan import (BOOK_CAP_MIN, DEVICES, PART_CAP_MIN, arm_minutes, main, ordered_parts, part_minutes,
                              plan)
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
