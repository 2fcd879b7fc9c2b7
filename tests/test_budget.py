"""The book's budgets: one setting sizes every experiment (simclr_book/budget.py).

The ``auto`` default and the devices are checked in tests/test_devices.py.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from simclr_book.budget import BUDGETS, Budget, Stopwatch, get_budget, load_data
from simclr_lite.errors import ConfigError
from simclr_lite.config import Config

from conftest import real_cifar_root


def test_default_is_auto_and_env_selects(monkeypatch):
    monkeypatch.delenv("SIMCLR_BUDGET", raising=False)
    assert get_budget().name == ("gpu" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv("SIMCLR_BUDGET", "Smoke")
    assert get_budget().name == "smoke"
    assert get_budget("cpu").name == "cpu"  # an argument wins over the environment


def test_unknown_budget_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("SIMCLR_BUDGET", "huge")
    with pytest.raises(ConfigError, match="unknown budget 'huge'.*auto or one of smoke, cpu, gpu"):
        get_budget()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_gpu_budget_without_gpu_says_so():
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        get_budget("gpu")


@pytest.mark.parametrize("name", ["smoke", "cpu"])
def test_config_is_valid_and_follows_the_budget(name):
    b = get_budget(name)
    cfg = b.config(temperature=0.3)
    assert isinstance(cfg, Config)
    cfg.validate()
    assert (cfg.arch, cfg.width, cfg.batch_size, cfg.epochs) == (b.arch, b.width, b.batch_size, b.epochs)
    assert cfg.temperature == 0.3 and cfg.compile is False and cfg.device == "cpu"
    with pytest.raises(ConfigError):
        b.config(not_a_field=1)


def test_budgets_grow():
    from simclr_book.budget import _BUDGETS
    sizes = [(_BUDGETS[n].train_images, _BUDGETS[n].epochs) for n in BUDGETS]
    assert sizes == sorted(sizes)
    assert all(isinstance(_BUDGETS[n], Budget) for n in BUDGETS)


def test_describe_names_the_device():
    line = get_budget("smoke").describe()
    assert line.startswith("budget smoke:") and "CPU (" in line and "2,048 train" in line


def test_stopwatch():
    with Stopwatch() as sw:
        sum(range(10000))
    assert 0 < sw.seconds < 5 and str(sw).endswith(" s")


@pytest.mark.skipif(real_cifar_root() is None, reason="needs the CIFAR-10 copy (SIMCLR_DATA)")
def test_load_data_is_class_balanced():
    xtr, ytr, xte, yte = load_data(get_budget("smoke"), root=real_cifar_root())
    assert xtr.dtype == torch.uint8 and xtr.shape[1:] == (3, 32, 32)
    assert abs(len(xtr) - 2048) <= 10 and abs(len(xte) - 512) <= 10
    counts = torch.bincount(ytr, minlength=10)
    assert counts.min() == counts.max()


def test_shared_models_follow_the_budget_and_the_preset():
    from simclr_book.budget import SHARED_MODELS, shared_config

    for name in ("smoke", "cpu"):
        b = get_budget(name)
        main = shared_config(b)
        assert main.epochs == b.model_epochs and main.proj_hidden == 2048 and main.temperature == 0.2
        assert main.time_budget == 0                    # fixed steps: reproducible, cacheable
        assert shared_config(b, "linear-head").head == "linear" and shared_config(b, "no-head").head == "none"
    assert set(SHARED_MODELS) >= {"main", "linear-head", "no-head"}
    with pytest.raises(ConfigError, match="unknown shared model 'big'"):
        shared_config(get_budget("smoke"), "big")


def test_shared_model_is_trained_once(tmp_path, monkeypatch):
    from simclr_book import budget as B

    monkeypatch.setenv("SIMCLR_CACHE", str(tmp_path))
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=g)
    data = (x, torch.arange(64) % 10, x[:16], torch.arange(16) % 10)
    small = dataclasses.replace(get_budget("smoke"), batch_size=32, model_epochs=1)
    first = B.shared_model("main", small, data=data)
    second = B.shared_model("main", small, data=data)
    assert (first["cached"], second["cached"]) == (False, True) and first["folder"] == second["folder"]
    assert first["folder"].startswith(str(tmp_path / "runs" / "smoke-main-"))


def test_arms_differ_from_the_main_model_only_in_length_and_overrides(tmp_path, monkeypatch):
    from simclr_book import budget as B

    b = get_budget("cpu")
    main, arm = B.shared_config(b), B.arm_config(b, temperature=0.5)
    assert (arm.epochs, arm.knn_every, arm.temperature) == (b.arm_epochs, 0, 0.5)
    same = {f.name for f in dataclasses.fields(main)} - {"epochs", "knn_every", "temperature"}
    assert all(getattr(arm, f) == getattr(main, f) for f in same)
    monkeypatch.setenv("SIMCLR_CACHE", str(tmp_path))
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    data = (x, torch.arange(64) % 10, x[:16], torch.arange(16) % 10)
    small = dataclasses.replace(get_budget("smoke"), batch_size=32, arm_epochs=1)
    first = B.train_arm("t", small, data, temperature=0.5)
    assert B.train_arm("t", small, data, temperature=0.5)["cached"] and not first["cached"]
    assert not B.train_arm("t", small, data, temperature=0.3)["cached"]


def test_markdown_table_escapes_pipes():
    from simclr_book.budget import markdown_table

    t = markdown_table(["a", "b|c"], [[1, "x | y"], ["2\nz", 3]])
    assert t.splitlines() == ["| a | b\\|c |", "|---|---|", "| 1 | x \\| y |", "| 2 z | 3 |"]


def test_simclr_lite_holds_no_book_machinery():
    """The budgets, glue, tables and book/results live in simclr_book; simclr_lite never imports it."""
    import subprocess
    import sys
    from pathlib import Path

    import simclr_lite

    pkg = Path(simclr_lite.__file__).parent
    assert not (pkg / "budget.py").exists() and not (pkg / "cache.py").exists()
    for f in sorted(pkg.glob("*.py")):
        text = f.read_text()
        for word in ("simclr_book", "SIMCLR_BUDGET", "myst_nb", "book/results", "markdown_table"):
            assert word not in text, f"simclr_lite/{f.name} mentions {word}"
    modules = sorted(f.stem for f in pkg.glob("*.py") if f.stem not in ("__init__", "__main__"))
    code = ("import sys, importlib\n" + "".join(f"importlib.import_module('simclr_lite.{m}')\n" for m in modules)
            + "assert not any(m.split('.')[0] == 'simclr_book' for m in sys.modules), 'simclr_book imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_the_intros_budget_table_says_what_the_budgets_are():
    """book/intro.md's table of budgets quotes each budget's sizes; they must be the code's (issue 31 found
    the cpu row describing sizes and times the chapters no longer use)."""
    import re
    from pathlib import Path

    from simclr_book.budget import _BUDGETS
    text = (Path(__file__).resolve().parents[1] / "book" / "intro.md").read_text()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `(smoke|cpu|gpu)` \|.*$", text, re.M)}
    assert set(rows) == {"smoke", "cpu", "gpu"}
    for name, row in rows.items():
        b = _BUDGETS[name]
        assert re.search(f"{b.model_train_images:,} / {b.model_test_images:,} (CIFAR-10 )?images", row), (name, row)
        assert f"ResNet-{b.arch[len('resnet'):]}" in row, (name, row)
    assert f"({_BUDGETS['cpu'].model_epochs} epochs)" in rows["cpu"] and f"{_BUDGETS['cpu'].arm_epochs}-epoch arms" in rows["cpu"]
    from simclr_book.specs import EPOCHS, FIG9_EPOCHS      # the parts whose arms are shorter than the budget's
    assert f"chapter 3's: {EPOCHS['ch03-table4']['cpu']} epochs" in rows["cpu"], rows["cpu"]
    assert EPOCHS["ch03-table4"]["cpu"] == EPOCHS["ch03-table5"]["cpu"]
    assert "Fig. 9: {} and {}".format(*FIG9_EPOCHS["cpu"]) in rows["cpu"], rows["cpu"]
    assert f"{_BUDGETS['cpu'].train_images:,} / {_BUDGETS['cpu'].test_images:,}" in rows["cpu"]
    assert f"shared models {_BUDGETS['gpu'].model_epochs} epochs, arms {_BUDGETS['gpu'].arm_epochs}" in rows["gpu"]
    assert "about 10 minutes" not in text


def test_simclr_device_runs_a_budgets_sizes_on_another_device(monkeypatch):
    """SIMCLR_BUDGET=smoke SIMCLR_DEVICE=cuda is the GPU check of the whole book (scripts/device_check.sh);
    without a GPU it is refused in one line, and a bad value too."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("SIMCLR_BUDGET", "smoke")
    monkeypatch.setenv("SIMCLR_DEVICE", "cpu")
    b = get_budget()
    assert b.device == "cpu" and b.config().device == "cpu" and "SIMCLR_DEVICE=cpu" in b.how_picked()
    monkeypatch.setenv("SIMCLR_DEVICE", "cuda")
    with pytest.raises(ConfigError, match="smoke budget on cuda needs a CUDA GPU"):
        get_budget()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    b = get_budget()
    assert (b.name, b.device, b.config().device, b.batch_size) == ("smoke", "cuda", "cuda", 128)
    monkeypatch.setenv("SIMCLR_DEVICE", "tpu")
    with pytest.raises(ConfigError, match="SIMCLR_DEVICE must be cpu or cuda"):
        get_budget()
