"""simclr_lite.config: one validation, driven by the registries training dispatches through."""
from __future__ import annotations

import pytest

from simclr_lite.config import PRESETS, Config, preset
from simclr_lite.errors import ConfigError
from simclr_lite.losses import LOSSES, check_temperature
from simclr_lite.models import ARCHS


@pytest.mark.parametrize("field,value,match", [("batch_size", 1, "at least 2"), ("temperature", 0.0, "> 0"),
                                               ("temperature", -1.0, "> 0"),
                                               ("temperature", float("inf"), "> 0 and finite, got inf"),
                                               ("lr", float("nan"), "finite"), ("amp", "fp8", "--amp"),
                                               ("loss", "infonce", "unknown loss"),
                                               ("arch", "resnet99", "unknown architecture 'resnet99'"),
                                               ("width", 0.0, "width multiplier must be > 0"),
                                               ("margin", -1.0, "--margin must be >= 0"),
                                               ("optimizer", "adamw", "--optimizer must be one of")])
def test_config_validation(field, value, match):
    with pytest.raises(ConfigError, match=match):
        Config(**{field: value}).validate()


@pytest.mark.parametrize("t", [0.5, 0.0, -1.0, float("nan"), float("inf"), 1e-30, 1e30])
def test_config_and_losses_agree_on_the_temperature(t):
    """One rule for tau: Config.validate refuses exactly what every loss refuses."""
    def refused(fn) -> bool:
        try:
            fn()
        except ConfigError:
            return True
        return False
    assert refused(lambda: Config(temperature=t).validate()) == refused(lambda: check_temperature(t))


def test_registries_decide_what_is_valid():
    for name in LOSSES:
        Config(loss=name).validate()
    for name in ARCHS:
        Config(arch=name).validate()


def test_presets_are_valid():
    for name in PRESETS:
        preset(name).validate()
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("cifar100")
    with pytest.raises(ConfigError, match="unknown config field"):
        preset("cifar10-smoke", lrr=1.0)
    assert preset("cifar10-cpu", epochs=3).time_budget == 0.0   # explicit epochs: all of them
