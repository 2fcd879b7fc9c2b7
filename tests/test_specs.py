"""simclr_book.specs: one spec per finding, read by the chapters, the plan and the full-scale runner."""
from __future__ import annotations

import pytest

from simclr_book.budget import budget_sizes
from simclr_book.plan import arm_config_at
from simclr_book.specs import FINDINGS, PARTS, command, finding_of, part_epochs


def test_every_finding_of_the_book_is_specified_once():
    assert [f.id for f in FINDINGS] == list(range(1, 15))
    for f in FINDINGS:
        assert f.rows or f.note, f"finding {f.id} has no rows and no note saying why"
        assert not f.rows or f.parts, f"finding {f.id} has rows but no part that measures them"
        assert all(p in PARTS for p in f.parts), f.parts


def test_every_row_names_arms_and_metrics_its_parts_have():
    metrics = {"knn", "linear", "knn_z", "linear_z", "top1", "ft1", "ft10", "scratch1", "scratch10"}
    for f in FINDINGS:
        arms = {a.name for p in f.parts for a in PARTS[p].arms}
        for row in f.rows:
            assert set(row.arms()) <= arms, (f.id, row.label, set(row.arms()) - arms)
            assert all(ref.split(":")[1] in metrics for ref in (row.a, row.b, *row.vs)), row
            assert row.sign in (-1, 0, 1) and len(row.vs) in (0, 2) and row.paper, row


def test_rows_with_a_head_evaluate_z_and_supervised_rows_use_supervised_arms():
    for f in FINDINGS:
        for row in f.rows:
            for ref in (row.a, row.b, *row.vs):
                arm, metric = ref.split(":")
                parts = [PARTS[p] for p in f.parts if arm in {a.name for a in PARTS[p].arms}]
                kinds = {p.arm(arm).kind for p in parts}
                if metric.endswith("_z"):
                    assert all("h_and_z" in p.evals for p in parts), ref
                assert (metric == "top1") == (kinds == {"supervised"}), ref
                if metric.startswith(("ft", "scratch")):
                    assert all("finetune" in p.evals for p in parts), ref


@pytest.mark.parametrize("part", sorted(PARTS))
def test_every_gpu_arm_gets_at_least_the_steps_of_its_cpu_counterpart(part):
    """Issue 30: every arm at gpu gets at least as many optimiser steps as at cpu (per seed)."""
    p = PARTS[part]
    cpu, gpu = budget_sizes("cpu"), budget_sizes("gpu")
    for arm in p.arms:
        c, g = arm_config_at(p, arm, cpu, 0), arm_config_at(p, arm, gpu, 0)
        steps_c = c.epochs * (cpu.model_train_images // c.batch_size)
        steps_g = g.epochs * (gpu.model_train_images // g.batch_size)
        assert steps_g >= steps_c, (part, arm.name, steps_g, steps_c)


def test_arms_differ_only_in_what_they_study():
    """Two arms of a part differ in their overrides alone: at each budget the rest of the config is the
    budget's recipe (so a verdict compares one variable)."""
    cpu = budget_sizes("cpu")
    p = PARTS["ch02-table1"]
    a, b = (arm_config_at(p, p.arm(n), cpu, 0).to_dict() for n in ("s0.125", "s1"))
    assert {k for k in a if a[k] != b[k]} == {"strength"}
    fig9 = PARTS["ch05-fig9"]
    short, long_ = (arm_config_at(fig9, fig9.arm(n), cpu, 0) for n in ("b256-short", "b256-long"))
    assert (short.epochs, long_.epochs) == (2, 6) and part_epochs(fig9, fig9.arm("b256-long"), "gpu") == 30


def test_decisive_parts_have_three_seeds_at_cpu():
    """The rule needs 3 seeds to decide (unless a gap is twice its test-set bar): every part whose arms
    decide a verdict trains 3 at cpu; Fig. 8 gets its 3 seeds as three parts."""
    one_seed = {14}     # Table 7: fine-tuning the shared model; its gaps must be 2x the test bar to decide
    for f in FINDINGS:
        seeds = {s for p in f.parts for s in PARTS[p].seeds["cpu"]}
        if f.rows and f.id not in one_seed:
            assert len(seeds) >= 3, (f.id, seeds)
    assert all(len(PARTS[p].seeds["cpu"]) == 1 for f in FINDINGS if f.id in one_seed for p in f.parts)


def test_command_names_the_runner():
    assert command("ch05-fig9") == "python -m simclr_book.fullscale ch05-fig9"


def test_fig8_trains_no_head_at_seed_0_only_and_the_other_heads_at_three():
    """No head's gap to the nonlinear head is beyond twice its test-set bar, so one seed decides it (the rule);
    the nonlinear and linear heads, about a point apart, get 3 seeds at every budget."""
    parts = [PARTS[f"ch04-fig8-seed{s}"] for s in (0, 1, 2)]
    for budget in ("smoke", "cpu", "gpu"):
        seeds: dict[str, list[int]] = {}
        for p in parts:
            for a in p.arms:
                seeds.setdefault(a.name, []).extend(p.seeds[budget])
        assert seeds == {"head-nonlinear": [0, 1, 2], "head-linear": [0, 1, 2], "head-none": [0]}, budget
    assert all(a.kind == "shared" for p in parts for a in p.arms)
    assert {a.shared for a in parts[0].arms} == {"main", "linear-head", "no-head"}


def test_chapter_4_rows_carry_the_prefixes_of_the_findings_page():
    """book/findings.md counts a chapter's table rows by their first words (scripts/findings.py)."""
    prefixes = {4: "Fig. 7:", 5: "Fig. 8:", 7: "B.4: t-SNE"}
    for fid, prefix in prefixes.items():
        assert all(row.label.startswith(prefix) for row in finding_of(fid).rows), fid
    assert "ch04-tsne" in finding_of(7).parts and "tsne" in PARTS["ch04-tsne"].evals


def test_the_negatives_controls_whole_batch_arm_is_fig9s_short_batch_1024_arm():
    """At every budget the negatives control runs Fig. 9's short run at batch 1024, so its whole-batch arm
    (neg_group 0) is part ch05-fig9's b1024-short: the same config, hence one run in the cache."""
    neg, fig9 = PARTS["ch05-negatives"], PARTS["ch05-fig9"]
    for name in ("smoke", "cpu", "gpu"):
        b = budget_sizes(name)
        whole = arm_config_at(neg, neg.arm("neg1024"), b, 1)
        assert whole == arm_config_at(fig9, fig9.arm("b1024-short"), b, 1), name
        assert arm_config_at(neg, neg.arm("neg64"), b, 1).epochs == whole.epochs, name
