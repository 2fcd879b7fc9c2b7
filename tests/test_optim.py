"""simclr_lite.optim: LARS against a hand-computed step, exclusions, lr scaling, warmup + cosine."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from simclr_lite.optim import LARS, build_optimizer, param_groups, scaled_lr, warmup_cosine


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))


def test_param_groups_exclude_biases_and_bn():
    m = _model()
    decay, excl = param_groups(m, 1e-6)
    assert decay["lars_exclude"] is False and excl["lars_exclude"] is True
    assert {id(p) for p in decay["params"]} == {id(m[0].weight), id(m[2].weight)}
    assert {id(p) for p in excl["params"]} == {id(m[0].bias), id(m[1].weight), id(m[1].bias), id(m[2].bias)}
    assert excl["weight_decay"] == 0.0


def test_lars_matches_hand_computed_step():
    w = torch.tensor([[3.0, 4.0]], requires_grad=True)   # ||w|| = 5
    b = torch.tensor([1.0], requires_grad=True)
    w.grad = torch.tensor([[0.6, 0.8]])                  # ||g|| = 1
    b.grad = torch.tensor([0.5])
    lr, wd, eta, mom = 0.1, 0.01, 0.001, 0.9
    opt = LARS([{"params": [w], "weight_decay": wd, "lars_exclude": False},
                {"params": [b], "weight_decay": 0.0, "lars_exclude": True}], lr=lr, momentum=mom, eta=eta)
    opt.step()
    g = torch.tensor([[0.6, 0.8]]) + wd * torch.tensor([[3.0, 4.0]])
    trust = eta * 5.0 / g.norm()
    expected_w = torch.tensor([[3.0, 4.0]]) - lr * trust * g
    assert torch.allclose(w.detach(), expected_w, atol=1e-7)
    # the excluded bias follows SGD with momentum, no decay, no trust ratio
    assert torch.allclose(b.detach(), torch.tensor([1.0 - lr * 0.5]))
    # second step: momentum accumulates
    w.grad = torch.tensor([[0.6, 0.8]])
    b.grad = torch.tensor([0.5])
    opt.step()
    assert torch.allclose(b.detach(), torch.tensor([1.0 - lr * 0.5 - (mom * lr * 0.5 + lr * 0.5)]))


def test_lars_excluded_parameters_get_no_weight_decay():
    p = torch.tensor([2.0], requires_grad=True)
    p.grad = torch.zeros(1)
    opt = LARS([{"params": [p], "weight_decay": 0.5, "lars_exclude": True}], lr=1.0)
    opt.step()
    assert p.item() == 2.0  # zero gradient: unchanged despite weight decay in the group


def test_lars_zero_norm_falls_back_to_trust_one():
    p = torch.zeros(3, 2, requires_grad=True)
    p.grad = torch.ones(3, 2)
    opt = LARS([{"params": [p], "weight_decay": 0.0, "lars_exclude": False}], lr=0.1, momentum=0.0)
    opt.step()
    assert torch.allclose(p.detach(), torch.full((3, 2), -0.1))


def test_lars_trust_ratio_makes_step_scale_invariant():
    torch.manual_seed(0)
    w = torch.randn(5, 5)
    g = torch.randn(5, 5)
    steps = []
    for scale in (1.0, 100.0):
        p = (w * scale).clone().requires_grad_(True)
        p.grad = g * scale
        LARS([{"params": [p], "weight_decay": 0.0, "lars_exclude": False}], lr=1.0, momentum=0.0).step()
        steps.append(((w * scale) - p.detach()).norm() / (w * scale).norm())
    assert torch.allclose(steps[0], steps[1])  # relative step eta, whatever the layer's scale


def test_lars_trains_a_model():
    torch.manual_seed(0)
    m = _model()
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    opt = build_optimizer(m, "lars", lr=5.0, weight_decay=1e-6)
    losses = []
    for _ in range(50):
        loss = nn.functional.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.9


def _net(dtype: torch.dtype) -> nn.Module:
    """Conv + BN + linear layers, one weight all zeros (trust ratio 1) and one parameter left without a gradient."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).to(dtype)
    with torch.no_grad():
        net[5].weight.zero_()
    return net


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
@pytest.mark.parametrize("wd", [0.0, 1e-4])
def test_foreach_lars_equals_the_reference_step(dtype, tol, wd):
    """The torch._foreach LARS (the default) gives the parameters and momentum buffers of the per-parameter
    reference over 6 steps: weight decay and trust ratios for weights, neither for biases and BN."""
    nets = [_net(dtype), _net(dtype)]
    opts = [LARS(param_groups(n, wd), lr=2.0, momentum=0.9, weight_decay=wd, foreach=f)
            for n, f in zip(nets, (True, False))]
    x, y = torch.randn(16, 3, 6, 6, dtype=dtype), torch.randint(0, 4, (16,))
    for step in range(6):
        for n, o in zip(nets, opts):
            o.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(n(x * (1 + step)), y).backward()
            n[7].bias.grad = None                              # a parameter without a gradient is skipped
            o.step()
    for (name, a), b in zip(nets[0].named_parameters(), nets[1].parameters()):
        assert (a - b).abs().max() <= tol * max(1.0, b.abs().max()), name
        if name != "7.bias":
            assert (opts[0].state[a]["momentum_buffer"] - opts[1].state[b]["momentum_buffer"]).abs().max() <= tol
    assert "momentum_buffer" not in opts[0].state[nets[0][7].bias]
    moved = [(a - b).abs().max() > 0 for a, b in zip(nets[0].parameters(), _net(dtype).parameters())]
    assert sum(moved) == len(moved) - 1                       # every parameter but the gradient-less one moved


def test_sgd_is_nesterov_momentum_with_weight_decay_on_weights_only():
    m = _model()
    opt = build_optimizer(m, "sgd", 0.1, 0.01)
    before = [p.detach().clone() for p in m.parameters()]
    for p in m.parameters():
        p.grad = torch.full_like(p, 0.5)
    opt.step()
    for (name, p), p0 in zip(m.named_parameters(), before):
        wd = 0.01 if p.ndim > 1 else 0.0                     # biases and BN: no weight decay
        # first Nesterov step: buf = g', update = g' + 0.9 * buf = 1.9 g', g' = g + wd * p
        assert torch.allclose(p.detach(), p0 - 0.1 * 1.9 * (0.5 + wd * p0), atol=1e-7), name


def test_adam_decays_weights_only():
    m = _model()
    opt = build_optimizer(m, "adam", 0.1, 0.01)
    before = [p.detach().clone() for p in m.parameters()]
    for p in m.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for (name, p), p0 in zip(m.named_parameters(), before):
        shrink = 1 - 0.1 * 0.01 if p.ndim > 1 else 1.0       # AdamW's decoupled decay; none for biases and BN
        assert torch.allclose(p.detach(), p0 * shrink, atol=1e-7), name
    assert isinstance(opt, torch.optim.AdamW)


def test_scaled_lr():
    assert scaled_lr(0.3, 4096, "linear") == pytest.approx(4.8)       # the paper's ImageNet default
    assert scaled_lr(0.075, 4096, "sqrt") == pytest.approx(4.8)       # B.1: 0.075 x sqrt(4096)
    assert scaled_lr(0.075, 256, "sqrt") == pytest.approx(1.2)
    assert scaled_lr(1.0, 512, "none") == 1.0


def test_warmup_cosine():
    total, warm = 100, 10
    vals = [warmup_cosine(s, total, warm) for s in range(total + 1)]
    assert vals[0] == pytest.approx(0.1) and vals[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(vals[:9], vals[1:10]))            # linear warmup
    assert vals[10] == pytest.approx(1.0)
    assert vals[55] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert all(a >= b for a, b in zip(vals[10:], vals[11:]))           # cosine decay, no restart
    assert vals[100] == pytest.approx(0.0, abs=1e-12)


def test_warmup_cosine_moved_forward_by_a_time_budget():
    """``at_least`` (the fraction of a time budget used) can only move the decay forward."""
    total, warm = 100, 10
    assert warmup_cosine(5, total, warm, at_least=0.9) == warmup_cosine(5, total, warm)   # warmup untouched
    assert warmup_cosine(20, total, warm, at_least=0.0) == warmup_cosine(20, total, warm)
    assert warmup_cosine(20, total, warm, at_least=0.5) == pytest.approx(0.5)          # cos at half-way
    assert warmup_cosine(80, total, warm, at_least=0.5) == warmup_cosine(80, total, warm)  # steps ahead
    assert warmup_cosine(20, total, warm, at_least=1.0) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine(20, total, warm, at_least=3.0) == pytest.approx(0.0, abs=1e-12)  # past the end: 0


def test_bad_values():
    from simclr_lite.errors import ConfigError
    with pytest.raises(ConfigError):
        LARS([torch.zeros(1, requires_grad=True)], lr=float("nan"))
    with pytest.raises(ConfigError):
        scaled_lr(0.1, 256, "cubic")
    with pytest.raises(ConfigError):
        build_optimizer(_model(), "rmsprop", 0.1, 0.0)
