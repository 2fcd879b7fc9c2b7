"""Every evaluation and fine-tuning entry point runs where it is asked to, on the CPU-only test machine.

A GPU is never needed: the checks ask for PyTorch's ``meta`` device (tensors
with a shape and no data) and record, in a spy encoder's forward, the device
of its input and of its weights, then stop the call. An entry point that
ignored its ``device`` argument would run the spy on the CPU and fail the
check. The mixed-precision dtype and the ``auto`` budget are checked with
``torch.cuda`` monkeypatched (the book: issue "correct on any CUDA device").
"""
from __future__ import annotations

import contextlib
import dataclasses
import inspect

import pytest
import torch
from torch import nn

from simclr_lite.config import Config, preset
from simclr_lite.distributed import autocast_dtype
from simclr_lite.evaluate import extract_features, fine_tune, knn_accuracy, knn_predict, linear_eval
from simclr_lite.run import load_run
from simclr_lite.splits import Split
from simclr_lite.train import pretrain


class _Stop(Exception):
    """Raised by the spy once it has recorded what it saw."""


def _autocast_state(device_type: str) -> tuple[bool, torch.dtype | None]:
    """Whether autocast is on for ``device_type`` and its dtype (torch >= 2.4 API, older fallback)."""
    if device_type not in ("cpu", "cuda"):
        return False, None
    try:
        return torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type)
    except (TypeError, AttributeError):   # torch < 2.4
        if device_type == "cpu":
            return torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype()
        return torch.is_autocast_enabled(), torch.get_autocast_gpu_dtype()


class Spy(nn.Module):
    """An encoder (conv + BN + pooling, ``feat_dim`` 4) whose forward records the devices it ran on, the
    autocast state, its mode, and then stops the call (a meta tensor cannot be copied back to the CPU)."""

    feat_dim = 4

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.seen: list[dict] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        autocast, dtype = _autocast_state(x.device.type)
        self.seen.append(dict(input=x.device.type, weight=self.conv.weight.device.type,
                              buffer=self.bn.running_mean.device.type, training=self.training,
                              autocast=autocast, autocast_dtype=dtype if autocast else None))
        raise _Stop


def _images(n: int = 8, size: int = 8) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def _meta_generators(monkeypatch) -> None:
    """torch.Generator cannot live on ``meta``: hand fine_tune a CPU one there (sampling on meta with a CPU
    generator works), so that the call reaches the encoder's forward."""
    real = torch.Generator

    def generator(device="cpu"):
        return real(device="cpu" if torch.device(device).type == "meta" else device)
    monkeypatch.setattr(torch, "Generator", generator)


def test_entry_points_take_a_device():
    for fn in (extract_features, fine_tune, linear_eval, load_run, Split.features):
        assert "device" in inspect.signature(fn).parameters, fn.__qualname__
    # fine_tune's default is the encoder's own device, not the CPU
    assert inspect.signature(fine_tune).parameters["device"].default is None


def test_extract_features_runs_a_cpu_encoder_on_the_device_asked_for_and_gives_it_back():
    """The chapter 1 crash: a cached model on the CPU, features asked for on the GPU."""
    enc = Spy().train()
    enc.conv.weight.grad = torch.ones_like(enc.conv.weight)
    weight, mean, before = enc.conv.weight, enc.bn.running_mean, enc.conv.weight.detach().clone()
    with pytest.raises(_Stop):
        extract_features(enc, _images(), device="meta")
    assert enc.seen == [dict(input="meta", weight="meta", buffer="meta", training=False, autocast=False,
                             autocast_dtype=None)]
    # afterwards: its own tensors, on the CPU, unchanged, with their gradient, and in its own mode again
    assert enc.conv.weight is weight and enc.bn.running_mean is mean and enc.training
    assert enc.conv.weight.device.type == "cpu" and torch.equal(enc.conv.weight.detach(), before)
    assert enc.conv.weight.grad.device.type == "cpu"


def test_extract_features_defaults_to_the_encoders_device():
    enc = Spy().to("meta")
    with pytest.raises(_Stop):
        extract_features(enc, _images())
    assert enc.seen[0]["input"] == enc.seen[0]["weight"] == "meta"


def test_extract_features_on_the_cpu_gives_the_same_features_wherever_asked():
    from simclr_lite.models import build_simclr

    enc = build_simclr("resnet10", 0.125, True, "nonlinear", 16, 2).encoder
    x = _images(20, 16)
    assert torch.equal(extract_features(enc, x), extract_features(enc, x, device="cpu"))
    assert extract_features(enc, x).device.type == "cpu"


def test_extract_features_autocasts_in_the_devices_dtype(monkeypatch):
    """The dtype comes from autocast_dtype (bf16 or fp16 on a GPU): made to answer bf16 for the CPU here."""
    import simclr_lite.evaluate as E

    monkeypatch.setattr(E, "autocast_dtype", lambda device: torch.bfloat16)
    enc = Spy()
    with pytest.raises(_Stop):
        extract_features(enc, _images(), device="cpu")
    assert enc.seen[0]["autocast"] and enc.seen[0]["autocast_dtype"] == torch.bfloat16
    monkeypatch.setattr(E, "autocast_dtype", lambda device: None)
    enc = Spy()
    with pytest.raises(_Stop):
        extract_features(enc, _images(), device="cpu")
    assert not enc.seen[0]["autocast"]


def test_fine_tune_trains_on_the_device_asked_for(monkeypatch):
    _meta_generators(monkeypatch)
    enc = Spy()
    x, y = _images(), torch.arange(8) % 2
    with pytest.raises(_Stop):
        fine_tune(enc, x, y, x, y, epochs=1, batch_size=4, device="meta")
    assert enc.seen[0]["input"] == enc.seen[0]["weight"] == enc.seen[0]["buffer"] == "meta"
    assert enc.seen[0]["training"]


def test_fine_tune_defaults_to_the_encoders_device(monkeypatch):
    _meta_generators(monkeypatch)
    enc = Spy().to("meta")
    x, y = _images(), torch.arange(8) % 2
    with pytest.raises(_Stop):
        fine_tune(enc, x, y, x, y, epochs=1, batch_size=4)
    assert enc.seen[0]["input"] == enc.seen[0]["weight"] == "meta"


def test_split_features_use_the_device():
    enc = Spy()
    with pytest.raises(_Stop):
        Split(_images(), torch.zeros(8, dtype=torch.long)).features(enc, Config(), torch.device("meta"))
    assert enc.seen[0]["input"] == enc.seen[0]["weight"] == "meta"


def test_linear_eval_trains_on_the_device_asked_for(monkeypatch):
    """CPU features, the layer trained on the device asked for (the spy sees the logits and the labels)."""
    seen = []

    def spy(logits, labels, *a, **k):
        seen.append((logits.device.type, labels.device.type))
        raise _Stop

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", spy)
    x, y = torch.randn(12, 4), torch.arange(12) % 3
    with pytest.raises(_Stop):
        linear_eval(x, y, x, y, epochs=1, device="meta")
    assert seen == [("meta", "meta")]
    seen.clear()
    with pytest.raises(_Stop):
        linear_eval(x, y, x, y, epochs=1)            # default: where the features are
    assert seen == [("cpu", "cpu")]


def test_knn_runs_where_its_features_are():
    g = torch.Generator().manual_seed(0)
    bank, queries, labels = torch.randn(30, 8, generator=g), torch.randn(5, 8, generator=g), torch.arange(30) % 3
    assert knn_predict(bank.to("meta"), labels.to("meta"), queries.to("meta"), k=5,
                       num_classes=3).device.type == "meta"
    assert 0 <= knn_accuracy(bank, labels, queries, torch.arange(5) % 3, k=5) <= 1


def test_load_run_puts_the_model_on_the_device(tmp_path):
    cfg = dataclasses.replace(preset("cifar10-smoke"), epochs=1, batch_size=16, knn_every=0, device="cpu",
                              image_size=8, log_every=1)
    x = _images(32)
    pretrain(cfg, tmp_path / "run", progress=False, data=(x, torch.arange(32) % 4, x[:8], torch.arange(8) % 4))
    cpu_model, _ = load_run(tmp_path / "run")
    meta_model, _ = load_run(tmp_path / "run", device="meta")
    assert {p.device.type for p in cpu_model.parameters()} == {"cpu"}
    assert {p.device.type for p in meta_model.parameters()} == {"meta"}


def test_autocast_dtype_follows_what_the_device_supports(monkeypatch):
    assert autocast_dtype(torch.device("cpu")) is None and autocast_dtype("cpu") is None
    assert autocast_dtype("meta") is None
    asked = []
    monkeypatch.setattr(torch.cuda, "device", lambda dev: asked.append(dev) or contextlib.nullcontext())
    for native, want in ((True, torch.bfloat16), (False, torch.float16)):   # e.g. H100 / T4 or V100
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True, b=native:
                            b and not including_emulation)
        assert autocast_dtype("cuda:1") == want
    assert asked == [torch.device("cuda", 1)] * 2         # the question is asked of that GPU


def _budget(monkeypatch, cuda: bool | None, env: str | None):
    from simclr_book.budget import get_budget

    if cuda is not None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    if env is None:
        monkeypatch.delenv("SIMCLR_BUDGET", raising=False)
    else:
        monkeypatch.setenv("SIMCLR_BUDGET", env)
    return get_budget()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the default on a machine without a GPU")
def test_default_budget_is_cpu_here(monkeypatch):
    b = _budget(monkeypatch, None, None)
    assert b.name == "cpu" and b.device == "cpu"
    assert b.how_picked() == "the cpu budget (SIMCLR_BUDGET unset, so auto: no CUDA GPU is visible), device cpu"


@pytest.mark.parametrize("env", [None, "auto", "AUTO "])
@pytest.mark.parametrize("cuda", [False, True])
def test_auto_budget_follows_cuda(monkeypatch, env, cuda):
    b = _budget(monkeypatch, cuda, env)
    assert (b.name, b.device) == (("gpu", "cuda") if cuda else ("cpu", "cpu"))
    assert ("a CUDA GPU is visible" if cuda else "no CUDA GPU is visible") in b.how_picked()
    assert ("SIMCLR_BUDGET unset" if env is None else "SIMCLR_BUDGET=") in b.how_picked()


def test_a_named_budget_says_how_it_was_picked(monkeypatch):
    from simclr_book.budget import get_budget

    assert _budget(monkeypatch, True, "smoke").how_picked() == "the smoke budget (SIMCLR_BUDGET=smoke), device cpu"
    assert get_budget("cpu").how_picked() == "the cpu budget (get_budget('cpu')), device cpu"
    assert get_budget("cpu") == get_budget("auto" if not torch.cuda.is_available() else "cpu")
