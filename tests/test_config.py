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


# --------------------------------------------------------------------------- validation in one place (issue 29)
# Where ConfigError may be raised, module by module. Config.validate checks every field and every combination
# that needs no data; a rule that a module's public function needs too (temperature, colour strength,
# architecture and width, learning rate, label fraction) is one function, called by both. Everything else
# depends on the data, the files, the device or a function's own arguments, and is checked once, where it is.
RAISE_SITES = {
    "config.py": 18,      # Config.validate (15), Config.from_dict (3): a stored config that cannot be read
    "augment.py": 1,      # check_strength: the rule for s
    "losses.py": 11,      # check_temperature, the shapes of z_a / z_b and of the gathered batch, the margin,
                          # gradient_wrt_anchor's arguments, and nt_xent's group against the batch (and one
                          # process: the group is within a process's own batch)
    "models.py": 3,       # check_arch (arch, width), the projection head's kind
    "optim.py": 3,        # check_lr, the names of the lr scaling and the optimiser
    "data.py": 1,         # check_label_fraction
    "evaluate.py": 1,     # knn_predict's k
    "sampling.py": 2,     # the batch against the number of processes (known only under torchrun)
    "distributed.py": 3,  # the device: no GPU, no GPU for this process, an unknown name
    "splits.py": 1,       # decoded tensors passed with loader=stream
    "train.py": 3,        # the view functions passed, the batch against the dataset, the data fingerprint on resume
    "run.py": 12,         # the run folder: a file, locked, holds another run, resume identity, extend, bad JSON
    "__main__.py": 4,     # a config.json that is not JSON, finetune on a stream run, evaluate's --epochs and
                          # --test-limit
}


def _raise_sites() -> dict[str, int]:
    import ast
    from pathlib import Path

    import simclr_lite
    counts: dict[str, int] = {}
    for path in sorted(Path(simclr_lite.__file__).parent.glob("*.py")):
        n = sum(isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)
                and getattr(node.exc.func, "id", None) == "ConfigError" for node in ast.walk(ast.parse(path.read_text())))
        if n:
            counts[path.name] = n
    return counts


def test_config_errors_are_raised_where_listed():
    """A new ``raise ConfigError`` must be added here with its reason: a second check of a rule that
    already has one (the issue found the colour strength checked four times) fails this test."""
    assert _raise_sites() == RAISE_SITES


@pytest.mark.parametrize("field,value,words", [
    ("strength", 3.0, "colour strength"), ("arch", "resnet99", "unknown architecture"), ("width", 0.0, "width"),
    ("lr", float("nan"), "learning rate"), ("temperature", 0.0, "temperature"), ("image_size", 4096, "at most 2048"),
])
def test_validate_uses_the_one_rule_of_each_field(field, value, words):
    from simclr_lite.config import Config
    from simclr_lite.errors import ConfigError
    with pytest.raises(ConfigError, match=words):
        Config(**{field: value}).validate()


@pytest.mark.parametrize("fields", [dict(neg_group=3, batch_size=512), dict(neg_group=1, batch_size=512),
                                    dict(neg_group=64, batch_size=512, loss="nt_logistic")])
def test_neg_group_must_divide_the_batch_and_need_nt_xent(fields):
    from simclr_lite.config import Config
    from simclr_lite.errors import ConfigError
    with pytest.raises(ConfigError, match="--neg-group"):
        Config(**fields).validate()
    Config(neg_group=64, batch_size=512).validate()      # a divisor, with nt_xent: fine
    assert Config(neg_group=64).loss_args() == dict(temperature=0.5, normalize=True, group=64)
