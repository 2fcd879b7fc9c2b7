"""simclr_book.heads: chapter 4's h and z, Table 3's probes, the effective rank and the two verdicts decided
at the chapter's budget."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from simclr_book.heads import (EXACT_N, TABLE3_ADDED, TABLE3_TASKS, effective_rank, exact_compare, h_and_z,
                               held_to_floor, probe, table3, table3_views, transformed_versions)
from simclr_book.verdict import AGAINST, FLOOR, NOISE, PAPER, SEEDS, compare
from simclr_lite.config import Config, build_model
from simclr_lite.models import build_simclr


def _model(head: str = "nonlinear") -> torch.nn.Module:
    torch.manual_seed(0)
    return build_simclr("resnet10", 0.125, True, head, 16, 2, 32).eval()


def test_effective_rank_counts_equal_directions():
    assert effective_rank(torch.ones(128)) == pytest.approx(128)
    assert effective_rank(torch.tensor([5.0, 0.0, 0.0])) == pytest.approx(1)
    spectrum = torch.tensor([3.0, 3.0, 3.0, 0.0, 0.0])
    assert effective_rank(spectrum) == pytest.approx(3) == effective_rank(100 * spectrum)   # scale-free
    # a spectrum concentrated on a few directions has a lower effective rank than a flatter one
    assert effective_rank(torch.tensor([10.0, 1, 1, 1])) < effective_rank(torch.tensor([4.0, 3, 3, 3]))


def test_h_and_z_are_the_encoder_and_the_head():
    model, x = _model(), torch.rand(6, 3, 32, 32)
    h, z = h_and_z(model, x, "cpu")
    with torch.no_grad():
        ref_h, ref_z = model(x)
    assert h.shape == (6, 64) and z.shape == (6, 16)
    assert torch.allclose(h, ref_h, atol=1e-5) and torch.allclose(z, ref_z, atol=1e-5)
    h0, z0 = h_and_z(_model("none"), x, "cpu")
    assert torch.equal(h0, z0)                                  # no head: z is h


def test_transformed_versions_are_the_tasks_of_table3():
    x = torch.rand(4, 3, 8, 8)
    v = transformed_versions(x, torch.Generator().manual_seed(0))
    assert list(v) == list(TABLE3_TASKS) and [len(v[t]) for t in TABLE3_TASKS] == [2, 4, 2, 2]
    gray = v["colour vs grayscale"][1]
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    assert torch.equal(v["rotation 0/90/180/270"][0], x)
    assert torch.equal(v["rotation 0/90/180/270"][2], x.flip(2).flip(3))          # 180 degrees
    assert not torch.equal(v["original vs corrupted"][1], x) and set(TABLE3_ADDED) == set(TABLE3_TASKS[1:])


def test_the_probe_tests_on_held_out_images_and_converges():
    rng = np.random.default_rng(0)
    n = 200
    versions = [rng.normal(size=(n, 8)) + 4 * k for k in range(2)]     # version k shifted by 4: separable
    res = probe(np.concatenate(versions), n)
    assert res["top1"] > 0.95 and res["n"] == 2 * (n - n // 2) and res["capped"] is False
    noise = probe(rng.normal(size=(2 * n, 8)), n)                      # nothing to learn: near chance (50%)
    assert abs(noise["top1"] - 0.5) < 0.15


def test_table3_measures_h_and_gh_for_the_asked_tasks():
    x = torch.rand(12, 3, 32, 32)
    out = table3(_model(), x, "cpu", tasks=["colour vs grayscale", "rotation 0/90/180/270"])
    assert list(out) == ["colour vs grayscale", "rotation 0/90/180/270"]
    assert out["colour vs grayscale"]["chance"] == 0.5 and out["rotation 0/90/180/270"]["chance"] == 0.25
    assert out["rotation 0/90/180/270"]["n"] == 4 * 6
    assert all(0 <= r["h"] <= 1 and 0 <= r["gh"] <= 1 for r in out.values())
    assert all(r["capped"] in (0, 1, 2) for r in out.values())


def test_table3_views_add_the_transformation_to_the_recipe():
    cfg = Config()
    images = (torch.rand(64, 3, 32, 32) * 255).to(torch.uint8)
    view, key = table3_views("rotation 0/90/180/270", cfg)
    out = view(images, generator=torch.Generator().manual_seed(0))
    assert out.shape == (64, 3, 32, 32) and out.dtype == torch.float32
    keys = {table3_views(t, cfg)[1] for t in TABLE3_ADDED}
    assert len(keys) == 3 and all(k.startswith("table3:") for k in keys)
    with pytest.raises(KeyError):
        table3_views("colour vs grayscale", cfg)            # grayscale is in the recipe already


def test_held_to_floor_marks_a_model_at_or_below_the_floor():
    v = compare("r", [0.9], [0.5], n=1000)
    assert v.status == PAPER
    assert held_to_floor(v, 0.60, 0.44) is v
    low = held_to_floor(v, 0.44, 0.44)
    assert low.status == FLOOR and low.floor == 0.44 and low.gap == v.gap and not low.decides


def test_exact_compare_has_only_the_seed_bar():
    a, b = [0.35, 0.33, 0.36], [0.61, 0.60, 0.62]
    v = exact_compare("rank", a, b, sign=-1)
    diffs = [100 * (x - y) for x, y in zip(a, b)]
    seed_se = np.std(diffs, ddof=1) / math.sqrt(3)
    assert v.n == EXACT_N and v.test_bar < 1e-3 and v.bar == pytest.approx(2 * seed_se)
    assert v.status == PAPER and exact_compare("rank", a, b, sign=+1).status == AGAINST
    assert exact_compare("rank", [0.35, 0.45, 0.40], [0.40, 0.40, 0.40], sign=-1).status == NOISE
    assert exact_compare("rank", a[:2], b[:2], sign=-1).status == SEEDS          # no test-set bar: 3 seeds needed
    assert exact_compare("rank", [0.35], [0.61], sign=-1).status == SEEDS


def test_the_linear_heads_initialisation_is_rebuilt_from_its_seed():
    """Chapter 4 rebuilds W at initialisation as pretrain() does: seed, then build the model."""
    cfg = Config(arch="resnet10", width=0.125, stem_stride=2, head="linear", proj_dim=16, seed=3)
    torch.manual_seed(cfg.seed)
    w1 = build_model(cfg).head.weight.detach().clone()
    torch.manual_seed(cfg.seed)
    assert torch.equal(w1, build_model(cfg).head.weight.detach())


def test_table3_runs_train_side_by_side_in_workers_then_load(monkeypatch, tmp_path):
    """Chapter 4's Table 3 arms through the worker pool: two workers pretrain two tasks' arms into the run
    cache (their views rebuilt in each worker from the task and the config), then table3_run loads each."""
    from simclr_book.budget import arm_config, budget_sizes
    from simclr_book.cache import run_cached
    from simclr_book.fullscale import side_by_side
    from simclr_book.heads import table3_run, table3_views
    monkeypatch.setenv("SIMCLR_CACHE", str(tmp_path))
    g = torch.Generator().manual_seed(0)
    data = (torch.randint(0, 256, (256, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(256) % 10,
            torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(20) % 10)
    smoke = budget_sizes("smoke")
    cfg = arm_config(smoke, epochs=1)
    tasks = list(TABLE3_ADDED)[:2]
    done = side_by_side([(table3_run, (t, cfg, "smoke"), {}) for t in tasks], smoke, data, workers=2)
    assert done is not None and [trained for _, trained in done] == [True, True]
    assert all(run_cached(cfg, data, table3_views(t, cfg)[1]) for t in tasks)
    assert all(table3_run(t, cfg, "smoke", data)["cached"] for t in tasks)
