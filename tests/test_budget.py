"""The book's budgets: one setting sizes every experiment (simclr_lite/budget.py)."""
from __future__ import annotations

import pytest
import torch

from simclr_lite import ConfigError
from simclr_lite.budget import BUDGETS, Budget, Stopwatch, get_budget, load_data, machine
from simclr_lite.train import Config

from conftest import real_cifar_root


def test_default_is_cpu_and_env_selects(monkeypatch):
    monkeypatch.delenv("SIMCLR_BUDGET", raising=False)
    assert get_budget().name == "cpu"
    monkeypatch.setenv("SIMCLR_BUDGET", "Smoke")
    assert get_budget().name == "smoke"
    assert get_budget("cpu").name == "cpu"  # an argument wins over the environment


def test_unknown_budget_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("SIMCLR_BUDGET", "huge")
    with pytest.raises(ConfigError, match="unknown budget 'huge'.*smoke, cpu, gpu"):
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
    from simclr_lite.budget import _BUDGETS
    sizes = [(_BUDGETS[n].train_images, _BUDGETS[n].epochs) for n in BUDGETS]
    assert sizes == sorted(sizes)
    assert all(isinstance(_BUDGETS[n], Budget) for n in BUDGETS)


def test_describe_and_machine_name_the_device():
    line = get_budget("smoke").describe()
    assert line.startswith("budget smoke:") and "CPU" in line and "2,048 train" in line
    assert machine("cpu").startswith("CPU (")


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
