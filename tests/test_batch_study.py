"""simclr_book.batch_study: chapter 5's plans, run names, designs, torchrun runs, step cost and figures."""
from __future__ import annotations

import json
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from simclr_book import batch_study as S  # noqa: E402
from simclr_book.budget import budget_sizes  # noqa: E402
from simclr_lite.errors import TrainingError  # noqa: E402
from simclr_lite.models import count_parameters  # noqa: E402
from simclr_lite.optim import warmup_cosine  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _data(n: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """A tiny class-labelled uint8 image set, (x, y, x_test, y_test)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(n) % 10,
            torch.randint(0, 256, (n // 2, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(n // 2) % 10)


# ------------------------------------------------------------------------------------------ plans
def test_plans_give_every_budget_the_same_sizes():
    assert set(S.PLANS) == {"smoke", "cpu", "gpu"}
    keys = set(S.PLANS["cpu"])
    for name, plan in S.PLANS.items():
        assert set(plan) == keys, name
        assert list(plan["grid_batches"]) == sorted(plan["grid_batches"]), name
    # the sizes chapter 5's text gives for the cpu budget
    cpu = S.PLANS["cpu"]
    assert cpu["grid_batches"] == (64, 256, 1024) and cpu["grid_epochs"] == (1, 2)
    assert cpu["sim"]["group"] == 16 and cpu["bn"]["procs"] == 8 and cpu["bn"]["batch"] == 256
    assert cpu["bn"]["batch"] // cpu["bn"]["procs"] == 2 * cpu["sim"]["group"]   # "twice the simulation's group"


# ---------------------------------------------------------------------------------- learning rate
def test_schedule_is_the_peak_times_warmup_cosine():
    lr = S.schedule(100, 10, 2.0)
    assert lr.shape == (100,)
    assert np.allclose(lr, [2.0 * warmup_cosine(t, 100, 10) for t in range(100)])
    assert np.allclose(lr[:10], 2.0 * np.arange(1, 11) / 10)                 # linear warmup to the peak
    assert np.argmax(lr) == 9 and math.isclose(lr.max(), 2.0)
    assert math.isclose(lr[10 + 45], 1.0, rel_tol=1e-9)                       # half-way down the cosine: peak / 2
    assert np.all(np.diff(lr[9:]) <= 0) and lr[-1] < 1e-2


def test_lr_rules_figure_crosses_at_4096():
    fig = S.plot_lr_rules()
    lin, sq, book = fig.axes[0].get_lines()[:3]
    x = list(lin.get_xdata())
    k = x.index(4096)
    assert math.isclose(lin.get_ydata()[k], 4.8) and math.isclose(sq.get_ydata()[k], 4.8)
    assert all(s > li for s, li in zip(sq.get_ydata()[:k], lin.get_ydata()[:k]))   # sqrt is larger below 4096
    assert math.isclose(book.get_ydata()[x.index(256)], 1.5)


def test_plot_schedules_draws_one_panel_per_curve():
    fig = S.plot_schedules([(S.schedule(20, 2, 1.0), 10, "a"), (S.schedule(30, 3, 0.5), 15, "b")])
    assert [ax.get_title() for ax in fig.axes] == ["a", "b"]
    assert len(fig.axes[1].get_lines()[0].get_xdata()) == 30


def test_negatives_per_anchor():
    assert S.negatives(64, 1024) == 126 and S.negatives(256, 1024) == 510
    assert S.negatives(0, 1024) == 2046 == S.negatives(1024, 1024)   # g = 0: the whole batch


def test_learned_below_chance():
    chance = math.log(2 * 64 - 1)
    assert S.learned_below_chance([chance + 1, chance - 0.01], 64)
    assert not S.learned_below_chance([chance - 1, chance + 0.01], 64)
    assert not S.learned_below_chance([1.0, float("inf"), 0.5], 64)
    assert not S.learned_below_chance([], 64)


def test_epoch_losses_keeps_epoch_entries_in_order():
    h = [dict(kind="step", loss=9.0), dict(kind="epoch", loss=3.0), dict(kind="step", loss=8.0),
         dict(kind="epoch", loss=2.0)]
    assert S.epoch_losses(h) == [3.0, 2.0]


# ------------------------------------------------------------------------------------ the runs
class _FakeCache:
    """Stands in for the run cache: records each call's config and name, returns a summary."""

    def __init__(self, cached: bool = False, fail: bool = False):
        self.calls, self.cached, self.fail = [], cached, fail

    def pretrain(self, cfg, data, name="run"):
        self.calls.append((cfg, name))
        if self.fail:
            raise TrainingError("loss is nan")
        return dict(model=object(), knn_top1=0.3, history=[], steps=7, wall_time_s=12.0, cached=self.cached)


def test_run_names_configs_and_records_a_sweep_run(monkeypatch):
    budget = budget_sizes("smoke")
    fake = _FakeCache(cached=True)
    monkeypatch.setattr(S, "cached_pretrain", fake.pretrain)
    study = S.BatchStudy(budget, _data(200), _data(40), width=0.5)
    s = study.run("sqrt", seed=2, batch_size=20, epochs=3, lr=0.075, lr_scaling="sqrt")
    cfg, name = fake.calls[0]
    assert name == "smoke-ch05-sqrt-seed2-b20-e3" and "model" not in s
    assert cfg == budget.config(width=0.5, seed=2, batch_size=20, epochs=3, lr=0.075, lr_scaling="sqrt",
                                log_every=2)                       # 200 // 20 // 5: about five points per epoch
    assert study.runs[("sqrt/seed2", 20, 3)] is s and study.knn("sqrt", 20, 3, seed=2) == 0.3
    assert study.loaded == {name: 12.0}
    study.run("lars", batch_size=20, epochs=1, log_every=1)
    assert fake.calls[1][1] == "smoke-ch05-lars-b20-e1" and fake.calls[1][0].log_every == 1


def test_run_records_a_diverged_run_only_when_asked(monkeypatch):
    monkeypatch.setattr(S, "cached_pretrain", _FakeCache(fail=True).pretrain)
    study = S.BatchStudy(budget_sizes("smoke"), _data(200), _data(40), width=0.5)
    with pytest.raises(TrainingError):
        study.run("sgd", batch_size=20, epochs=1, optimizer="sgd")
    s = study.run("sgd", batch_size=20, epochs=1, optimizer="sgd", diverged_ok=True)
    assert math.isnan(s["knn_top1"]) and s["history"] == [] and "nan" in s["error"]
    assert study.runs[("sgd", 20, 1)] is s and study.loaded == {}


# -------------------------------------------------------------------------------- torchrun runs
BN = dict(train=64, test=32, batch=16, procs=2, epochs=1, arch="resnet10", width=0.125)


def test_bn_command_runs_the_cli_under_torchrun_with_the_plans_sizes():
    cmd = S.bn_command(BN, "off", "OUT")
    assert cmd[1:4] == ["-m", "torch.distributed.run", "--standalone"] and "--nproc_per_node=2" in cmd
    flags = dict(zip(cmd, cmd[1:]))
    assert flags["--sync-bn"] == "off" and flags["--batch-size"] == "16" and flags["--train-limit"] == "64"
    assert flags["--out"] == "OUT" and flags["--device"] == "cpu" and flags["--seed"] == "0"
    text = S.bn_command_text(BN)
    assert text.startswith("torchrun --standalone --nproc_per_node=2 -m simclr_lite pretrain")
    assert "--data PATH" in text and "--out $OUT" in text and "--sync-bn on" in text


def test_torchrun_run_loads_a_cached_run_without_running(monkeypatch, tmp_path):
    monkeypatch.setenv("SIMCLR_CACHE", str(tmp_path))
    monkeypatch.setattr(S.subprocess, "run", lambda *a, **k: pytest.fail("a cached run must not run again"))
    key = S.result_key(dict(cmd=S.bn_command(BN, "on", "OUT")[1:], data="fp"))
    out = tmp_path / "results" / f"smoke-torchrun-sync-on-{key}"
    out.mkdir(parents=True)
    (out / "run.json").write_text(json.dumps(dict(wall_time_s=30.0, knn_top1=0.2)))
    (out / "metrics.jsonl").write_text('{"kind": "step", "loss": 4.0}\n{"kind": "epoch", "loss": 3.9}\n')
    loaded = {}
    r = S.torchrun_run("smoke", BN, "on", "fp", loaded)
    assert r["cached"] and r["out"] == out and r["summary"]["knn_top1"] == 0.2 and len(r["metrics"]) == 2
    assert loaded == {"torchrun-sync-on": 30.0}


def test_torchrun_run_that_fails_leaves_nothing_under_its_key(monkeypatch, tmp_path):
    monkeypatch.setenv("SIMCLR_CACHE", str(tmp_path))

    class Failed:
        returncode, stderr = 1, "boom"
    monkeypatch.setattr(S.subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(AssertionError, match="exit code 1"):
        S.torchrun_run("smoke", BN, "off", "fp")
    assert list((tmp_path / "results").iterdir()) == []


# ------------------------------------------------------------------------------------ BN helpers
def test_smooth_is_a_running_mean():
    v = np.arange(10, dtype=float) ** 2
    assert np.allclose(S.smooth(v, 1), v)
    s = S.smooth(v, 3)
    assert np.allclose(s[2:], np.convolve(v, np.ones(3) / 3, mode="valid"))   # full windows
    assert s[0] == v[0] and s[1] == v[:2].mean()                              # the first points: what there is
    assert np.allclose(S.smooth([2.0] * 7, 4), 2.0)


def test_last_epoch_averages_the_last_steps():
    log = [dict(step=i + 1, loss=float(i), accuracy=i / 10) for i in range(10)]
    r = S.last_epoch(log, 4)
    assert r["n_last"] == 4 and r["loss_last"] == pytest.approx(7.5) and r["acc_last"] == pytest.approx(0.75)
    assert r["acc_sd"] == pytest.approx(np.std([0.6, 0.7, 0.8, 0.9], ddof=1))


# ------------------------------------------------------------------------------- memory and time
def test_similarity_matrix_sizes():
    # exercise 3 of chapter 5: 16 MiB at N = 1024, 1 GiB at N = 8192
    assert S.similarity_mib(1024) == 16 and S.similarity_mib(8192) == 1024


def test_step_cost_saved_activations_grow_with_the_batch_and_weights_do_not():
    budget = budget_sizes("smoke")
    x = _data(16)[0]
    small, large = (S.step_cost(budget, x, b, reps=1) for b in (4, 8))
    assert small["batch"] == 4 and large["batch"] == 8 and small["step_s"] > 0
    assert 1.8 * small["act_mb"] < large["act_mb"] < 2.2 * small["act_mb"]        # linear in the batch
    from simclr_lite.config import build_model
    model = build_model(budget.config())
    assert small["params"] == large["params"] == count_parameters(model)
    assert small["fixed_mb"] == large["fixed_mb"] == pytest.approx(3 * 4 * small["params"] / 2**20)


# ------------------------------------------------------------------------------------- figures
FLOORS = dict(random=0.2, pixels=0.3)


def test_plot_grid_draws_a_bar_per_run_and_the_floors():
    grid = np.array([[0.31, 0.35], [0.33, 0.36], [0.34, 0.37]])
    fig = S.plot_grid(grid, (32, 128, 512), (1, 2), FLOORS, "t")
    ax = fig.axes[0]
    assert len(ax.patches) == 6 and sorted(round(p.get_height(), 6) for p in ax.patches) == sorted(
        round(100 * v, 6) for v in grid.ravel())
    assert {line.get_ydata()[0] for line in ax.get_lines()} == {20.0, 30.0}


PART_FLOORS = dict(random_linear=0.2, pixels_linear=0.3, random_knn=0.15, pixels_knn=0.25)


def _rec(batch, epochs, seed, linear, neg_group=0):
    return dict(batch_size=batch, epochs=epochs, seed=seed, linear=linear, knn=linear - 0.01,
                config=dict(neg_group=neg_group))


def test_plot_fig9_part_draws_each_batch_against_epochs_through_the_seeds_means():
    arms = [_rec(b, e, s, 0.3 + 0.01 * s + (0.05 if e == 6 else 0) + (0.02 if b == 1024 else 0))
            for s in (0, 1, 2) for b in (256, 1024) for e in (2, 6)]
    fig = S.plot_fig9_part(dict(arms=arms, floors=PART_FLOORS, train_images=50000), "t")
    means = [line for line in fig.axes[0].get_lines() if line.get_marker() == "o"]
    assert [list(m.get_xdata()) for m in means] == [[2, 6], [2, 6]]
    assert list(means[0].get_ydata()) == pytest.approx([31, 36]) and list(means[1].get_ydata()) == pytest.approx([33, 38])
    assert {line.get_ydata()[0] for line in fig.axes[0].get_lines() if line.get_linestyle() in ("--", ":")} == {20.0, 30.0}


def test_plot_negatives_places_each_arm_at_its_negatives():
    arms = [_rec(1024, 4, s, v + 0.01 * s, g) for s in (0, 1) for g, v in ((64, 0.40), (256, 0.42), (0, 0.43))]
    fig = S.plot_negatives(dict(arms=arms, floors=PART_FLOORS), "t", metric="linear")
    line = next(line for line in fig.axes[0].get_lines() if line.get_marker() == "o")
    assert list(line.get_xdata()) == [126, 510, 2046] and list(line.get_ydata()) == pytest.approx([40.5, 42.5, 43.5])


def test_plot_lars_sgd_skips_a_diverged_run():
    h = [dict(kind="step", epoch=0.5, loss=5.0), dict(kind="step", epoch=1.0, loss=4.0)]
    runs = {("lars", 32, 1): dict(history=h), ("sgd", 32, 1): dict(history=[]),
            ("lars", 512, 1): dict(history=h), ("sgd", 512, 1): dict(history=h)}
    fig = S.plot_lars_sgd(runs, (32, 512), 1)
    assert [len(ax.get_lines()) for ax in fig.axes] == [1, 2]


def test_plot_bn_sim_and_torchrun_and_step_cost_draw_their_curves():
    log = [dict(step=i + 1, epoch=(i + 1) / 4, loss=5.0 - i / 10, accuracy=i / 10) for i in range(8)]
    fig = S.plot_bn_sim({"global": dict(log=log), "per-device": dict(log=log)}, 16, 2, "t")
    assert [len(ax.get_lines()) for ax in fig.axes] == [2, 2]
    assert "groups of 16" in fig.axes[0].get_legend().get_texts()[1].get_text()
    met = [dict(kind="step", epoch=0.5, loss=5.0), dict(kind="epoch", epoch=1, loss=4.5)]
    fig = S.plot_torchrun_losses({"on": dict(metrics=met), "off": dict(metrics=met)}, 16)
    assert len(fig.axes[0].get_lines()) == 2 and "16 torchrun" in fig.axes[0].get_title()
    cost = [dict(batch=b, step_s=0.01 * b, act_mb=b / 2, fixed_mb=1.0) for b in (16, 32)]
    fig = S.plot_step_cost(cost, "t")
    assert [len(ax.get_lines()) for ax in fig.axes] == [1, 2]
