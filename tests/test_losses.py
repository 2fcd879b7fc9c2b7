"""Tests of simclr_lite.losses: NT-Xent (eq. 1, Algorithm 1), Table 2, Table 4, Table 5."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from simclr_lite.errors import ConfigError
from simclr_lite.losses import (LOSSES, _semi_hard_index, contrastive_stats, gradient_wrt_anchor,
                                margin_triplet, nt_logistic, nt_xent, nt_xent_naive)


def pairs(n: int, d: int, seed: int = 0, dtype=torch.float64, noise: float = 0.5):
    """Correlated views with dot products of order 1 (so the naive loss cannot overflow)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, d, generator=g, dtype=dtype)
    z_a = base + noise * torch.randn(n, d, generator=g, dtype=dtype)
    z_b = base + noise * torch.randn(n, d, generator=g, dtype=dtype)
    scale = math.sqrt(d)
    return (z_a / scale).requires_grad_(), (z_b / scale).requires_grad_()


def loss_and_grads(fn, z_a, z_b, **kw):
    loss = fn(z_a, z_b, **kw)
    return (loss, *torch.autograd.grad(loss, (z_a, z_b)))


# ----------------------------------------------------------- NT-Xent vs Algorithm 1
# The naive loop costs O(N^2) Python ops (~0.5 s at N=33), so N=33 runs a smaller grid.
GRID = [(n, d, t, norm) for n, d, t, norm in itertools.product(
    (2, 3, 8), (1, 2, 16, 128), (0.05, 0.1, 0.5, 1.0), (True, False))]
GRID += [(33, d, 0.1, norm) for d in (2, 128) for norm in (True, False)]


@pytest.mark.parametrize("n,d,temperature,normalize", GRID)
def test_nt_xent_matches_algorithm_1(n, d, temperature, normalize):
    z_a, z_b = pairs(n, d, seed=n * 1000 + d)
    fast = loss_and_grads(nt_xent, z_a, z_b, temperature=temperature, normalize=normalize)
    slow = loss_and_grads(nt_xent_naive, z_a, z_b, temperature=temperature, normalize=normalize)
    for x, y in zip(fast, slow):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("n,group", [(4, 2), (8, 4), (12, 3), (12, 6), (16, 2)])
@pytest.mark.parametrize("normalize", [True, False])
def test_nt_xent_within_sub_batches_matches_algorithm_1_per_sub_batch(n, group, normalize):
    """Fig. 9's control (``group``): each sub-batch of g consecutive pairs is its own Algorithm 1 batch; the
    loss is their mean (equal sizes: the mean over all 2N anchors), and so are the gradients."""
    z_a, z_b = pairs(n, 8, seed=n + group)
    fast = loss_and_grads(nt_xent, z_a, z_b, temperature=0.2, normalize=normalize, group=group)
    slow = sum(nt_xent_naive(z_a[i:i + group], z_b[i:i + group], temperature=0.2, normalize=normalize)
               for i in range(0, n, group)) / (n // group)
    slow = (slow, *torch.autograd.grad(slow, (z_a, z_b)))
    for x, y in zip(fast, slow):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-10)
    # fewer negatives: the loss of the same embeddings is lower than with the whole batch
    assert fast[0] < nt_xent(z_a, z_b, temperature=0.2, normalize=normalize)


def test_nt_xent_one_group_is_the_whole_batch():
    z_a, z_b = pairs(8, 16, seed=3)
    torch.testing.assert_close(nt_xent(z_a, z_b, 0.3, group=8), nt_xent(z_a, z_b, 0.3), rtol=1e-12, atol=0)


@pytest.mark.parametrize("group", [1, 3, 5])
def test_nt_xent_group_must_divide_the_batch(group):
    z_a, z_b = pairs(8, 4)
    with pytest.raises(ConfigError, match="--neg-group must be at least 2 and divide the batch of 8 pairs"):
        nt_xent(z_a, z_b, group=group)


def test_nt_xent_group_refuses_a_gathered_batch():
    z_a, z_b = pairs(4, 4)
    with pytest.raises(ConfigError, match="one process"):
        nt_xent(z_a, z_b, group=2, z_a_all=torch.cat([z_a, z_a]), z_b_all=torch.cat([z_b, z_b]), offset=0)


@pytest.mark.parametrize("fn", [nt_xent, nt_xent_naive])
@pytest.mark.parametrize("n,temperature", [(2, 0.1), (5, 0.5), (16, 1.0), (8, 0.05)])
def test_closed_form_orthogonal_negatives(fn, n, temperature):
    z = torch.eye(32, dtype=torch.float64)[:n]  # positives aligned, all negatives orthogonal
    e = math.exp(1 / temperature)
    expected = -math.log(e / (e + (2 * n - 2) * math.exp(0)))
    assert fn(z, z.clone(), temperature=temperature).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("fn", [nt_xent, nt_xent_naive])
@pytest.mark.parametrize("n", [2, 3, 10])
def test_identical_vectors_give_log_2n_minus_1(fn, n):
    z = torch.ones(n, 4, dtype=torch.float64)
    assert fn(z, z, temperature=0.3).item() == pytest.approx(math.log(2 * n - 1), rel=1e-12)


def test_swapping_views_and_permuting_pairs_keep_the_loss():
    z_a, z_b = pairs(9, 16, seed=3)
    loss = nt_xent(z_a, z_b, 0.2)
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(nt_xent(z_b, z_a, 0.2), loss)
    torch.testing.assert_close(nt_xent(z_a[perm], z_b[perm], 0.2), loss)
    # permuting one view only breaks the pairs and must change the loss
    assert not torch.isclose(nt_xent(z_a[perm], z_b, 0.2), loss)


def test_scale_invariance_only_when_normalized():
    z_a, z_b = pairs(6, 8, seed=4)
    scale = torch.linspace(0.2, 5.0, 6, dtype=torch.float64).unsqueeze(1)
    torch.testing.assert_close(nt_xent(3.7 * z_a, z_b * scale, 0.5), nt_xent(z_a, z_b, 0.5))
    assert not torch.isclose(nt_xent(3.7 * z_a, z_b * scale, 0.5, normalize=False),
                             nt_xent(z_a, z_b, 0.5, normalize=False))


# ------------------------------------------------------------- distributed form
def test_distributed_form_with_whole_batch_equals_plain_loss():
    z_a, z_b = pairs(7, 16, seed=5)
    torch.testing.assert_close(nt_xent(z_a, z_b, 0.1, z_a_all=z_a, z_b_all=z_b, offset=0),
                               nt_xent(z_a, z_b, 0.1), rtol=0, atol=0)


@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 6])
@pytest.mark.parametrize("normalize", [True, False])
def test_distributed_chunks_average_to_global_loss(chunk, normalize):
    n, temperature = 12, 0.2
    z_a, z_b = pairs(n, 16, seed=chunk)
    full, ga, gb = loss_and_grads(nt_xent, z_a, z_b, temperature=temperature, normalize=normalize)
    shards = [nt_xent(z_a[o:o + chunk], z_b[o:o + chunk], temperature, normalize,
                      z_a_all=z_a, z_b_all=z_b, offset=o) for o in range(0, n, chunk)]
    mean = torch.stack(shards).mean()
    torch.testing.assert_close(mean, full)
    for g, h in zip(torch.autograd.grad(mean, (z_a, z_b)), (ga, gb)):
        torch.testing.assert_close(g, h)
    # each shard on its own (without the global negatives) is a different loss
    local = torch.stack([nt_xent(z_a[o:o + 6], z_b[o:o + 6], temperature, normalize)
                         for o in (0, 6)]).mean()
    assert not torch.isclose(local, full)


@pytest.mark.parametrize("name,kw", [("nt_logistic", dict(temperature=0.2)),
                                     ("nt_logistic", dict(temperature=0.2, normalize=False)),
                                     ("nt_logistic", dict(temperature=0.5, semi_hard=True)),
                                     ("margin_triplet", dict(margin=0.4)),
                                     ("margin_triplet", dict(margin=0.4, semi_hard=True))])
@pytest.mark.parametrize("chunk", [3, 4])
def test_table_2_losses_distributed_chunks_average_to_global_loss(name, kw, chunk):
    """Under torchrun every loss of Table 2 sees the global batch's negatives: the mean of the
    shards' losses (and its gradient) is the one-process loss over the whole batch."""
    fn, n = LOSSES[name], 12
    z_a, z_b = pairs(n, 16, seed=chunk + 10)
    full, ga, gb = loss_and_grads(fn, z_a, z_b, **kw)
    mean = torch.stack([fn(z_a[o:o + chunk], z_b[o:o + chunk], **kw, z_a_all=z_a, z_b_all=z_b, offset=o)
                        for o in range(0, n, chunk)]).mean()
    torch.testing.assert_close(mean, full, rtol=0, atol=1e-12)
    for g, h in zip(torch.autograd.grad(mean, (z_a, z_b)), (ga, gb)):
        torch.testing.assert_close(g, h, rtol=0, atol=1e-12)
    local = torch.stack([fn(z_a[o:o + chunk], z_b[o:o + chunk], **kw) for o in range(0, n, chunk)]).mean()
    assert not torch.isclose(local, full)  # the shards' own negatives alone: another loss


def test_nt_logistic_honours_normalize():
    z_a, z_b = pairs(5, 8, seed=3)
    scaled = (3 * z_a.detach(), 3 * z_b.detach())
    assert nt_logistic(*scaled, 0.5) == pytest.approx(nt_logistic(z_a, z_b, 0.5).item(), abs=1e-12)
    assert nt_logistic(*scaled, 0.5, normalize=False) != pytest.approx(nt_logistic(z_a, z_b, 0.5).item(), abs=1e-3)
    # plain dot products: the triplet loop's formula without the normalisation
    s = torch.cat([z_a, z_b]) @ torch.cat([z_a, z_b]).T
    n2, i = 10, torch.arange(10)
    pos = s[i, (i + 5) % n2]
    neg = s[~(torch.eye(n2, dtype=torch.bool) | (torch.arange(n2)[None] == ((i + 5) % n2)[:, None]))].view(n2, -1)
    ref = (F.softplus(-pos[:, None] / 0.5) + F.softplus(neg / 0.5)).mean()
    torch.testing.assert_close(nt_logistic(z_a, z_b, 0.5, normalize=False), ref)


def test_distributed_form_rejects_bad_arguments():
    z_a, z_b = pairs(4, 8)
    with pytest.raises(ConfigError, match="offset=2"):
        nt_xent(z_a[:3], z_b[:3], z_a_all=z_a, z_b_all=z_b, offset=2)
    with pytest.raises(ConfigError, match="z_b_all"):
        nt_xent(z_a, z_b, z_a_all=z_a)
    with pytest.raises(ConfigError, match="N=1"):  # a global batch of one pair has no negatives
        nt_xent(z_a[:1], z_b[:1], z_a_all=z_a[:1], z_b_all=z_b[:1])


# -------------------------------------------------------- Table 2: closed forms
def negative_loss_single_anchor(loss, u, v_pos, v_negs, temperature, margin):
    """Table 2's negative loss for one anchor; the per-triplet ones averaged over K."""
    s_pos, s_neg = u @ v_pos, v_negs @ u
    if loss == "nt_xent":
        return s_pos / temperature - torch.logsumexp(torch.cat([s_pos[None], s_neg]) / temperature, 0)
    if loss == "nt_logistic":
        return (F.logsigmoid(s_pos / temperature) + F.logsigmoid(-s_neg / temperature)).mean()
    return -F.relu(s_neg - s_pos + margin).mean()


@pytest.mark.parametrize("loss", ["nt_xent", "nt_logistic", "margin_triplet"])
@pytest.mark.parametrize("temperature,margin", [(0.1, 0.0), (0.5, 0.3), (1.0, 2.0)])
@pytest.mark.parametrize("d,k", [(2, 1), (16, 5), (128, 30)])
def test_table_2_gradients_match_autograd(loss, temperature, margin, d, k):
    g = torch.Generator().manual_seed(d + k)
    u, v_pos, *negs = F.normalize(torch.randn(k + 2, d, generator=g, dtype=torch.float64), dim=1)
    v_negs = torch.stack(negs)
    u.requires_grad_()
    (expected,) = torch.autograd.grad(
        negative_loss_single_anchor(loss, u, v_pos, v_negs, temperature, margin), u)
    got = gradient_wrt_anchor(loss, u.detach(), v_pos, v_negs, temperature, margin)
    torch.testing.assert_close(got, expected)


def test_table_2_gradient_is_an_ascent_direction_of_the_negative_loss():
    g = torch.Generator().manual_seed(1)
    u, v_pos, *negs = F.normalize(torch.randn(6, 16, generator=g, dtype=torch.float64), dim=1)
    v_negs = torch.stack(negs)
    for loss in LOSSES:
        step = 1e-3 * gradient_wrt_anchor(loss, u, v_pos, v_negs, 0.5, 2.0)
        before = negative_loss_single_anchor(loss, u, v_pos, v_negs, 0.5, 2.0)
        after = negative_loss_single_anchor(loss, u + step, v_pos, v_negs, 0.5, 2.0)
        assert after > before, loss


def test_gradient_wrt_anchor_rejects_unknown_loss_and_shapes():
    u = torch.ones(4)
    with pytest.raises(ConfigError, match="'hinge'"):
        gradient_wrt_anchor("hinge", u, u, u[None])
    with pytest.raises(ConfigError, match=r"\(4,\)"):
        gradient_wrt_anchor("nt_xent", u, u, u)


# ------------------------------------------------- NT-Logistic / margin triplet
def triplet_reference(z_a, z_b, per_triplet):
    """Loop over all 2N anchors and their 2N - 2 negatives; mean over triplets."""
    z = F.normalize(torch.cat([z_a, z_b]), dim=1)
    n2 = len(z)
    terms = [per_triplet(z[i] @ z[(i + n2 // 2) % n2], z[i] @ z[k])
             for i in range(n2) for k in range(n2) if k not in (i, (i + n2 // 2) % n2)]
    return torch.stack(terms).mean()


@pytest.mark.parametrize("n,d,temperature", [(2, 4, 0.1), (5, 16, 0.5), (8, 3, 1.0)])
def test_nt_logistic_matches_triplet_loop(n, d, temperature):
    z_a, z_b = pairs(n, d, seed=n)
    ref = triplet_reference(z_a, z_b, lambda sp, sn: -F.logsigmoid(sp / temperature)
                            - F.logsigmoid(-sn / temperature))
    torch.testing.assert_close(nt_logistic(z_a, z_b, temperature), ref)


@pytest.mark.parametrize("n,d,margin", [(2, 4, 0.0), (5, 16, 0.5), (8, 3, 1.0)])
def test_margin_triplet_matches_triplet_loop(n, d, margin):
    z_a, z_b = pairs(n, d, seed=n)
    ref = triplet_reference(z_a, z_b, lambda sp, sn: F.relu(sn - sp + margin))
    torch.testing.assert_close(margin_triplet(z_a, z_b, margin), ref)


def test_table_2_losses_on_orthogonal_negatives():
    z = torch.eye(8, dtype=torch.float64)[:4]  # s+ = 1, every s- = 0
    assert margin_triplet(z, z, margin=1.0).item() == pytest.approx(0.0)
    assert margin_triplet(z, z, margin=1.5).item() == pytest.approx(0.5)
    expected = math.log1p(math.exp(-1 / 0.2)) + math.log(2)
    assert nt_logistic(z, z, temperature=0.2).item() == pytest.approx(expected)


# Semi-hard mining, by hand. Unit vectors at these angles (degrees); views in
# order a0 a1 a2 b0 b1 b2, positive of view i is view (i + 3) mod 6.
ANGLES = [0, 30, 180, 20, 210, 200]
# anchor 0 (0 deg):   s+ = cos20;  negatives 1 (cos30), 2, 4, 5 -> closest below s+: view 1
# anchor 1 (30 deg):  s+ = cos180 = -1: nothing below, take the least similar: view 5 (cos170)
# anchor 2 (180 deg): s+ = cos20;  view 4 (cos30) is below s+ and the closest
# anchor 3 (20 deg):  s+ = cos20;  view 1 (cos10) is harder than the positive, excluded; view 2 (cos160)
# anchor 4 (210 deg): s+ = -1 again: least similar is view 3 (cos190)
# anchor 5 (200 deg): s+ = cos20;  view 4 (cos10) excluded; view 0 (cos160)
MINED = [1, 5, 4, 2, 3, 0]


def angle_views():
    rad = torch.tensor(ANGLES, dtype=torch.float64) * math.pi / 180
    z = torch.stack([rad.cos(), rad.sin()], 1)
    sim = z @ z.T
    return z[:3], z[3:], sim


def test_semi_hard_mining_picks_the_hand_derived_negatives():
    _, _, sim = angle_views()
    pos = [(i + 3) % 6 for i in range(6)]
    negs = [[k for k in range(6) if k not in (i, pos[i])] for i in range(6)]
    s_pos = sim[range(6), pos].unsqueeze(1)
    s_neg = torch.stack([sim[i, negs[i]] for i in range(6)])
    mined = _semi_hard_index(s_pos, s_neg).squeeze(1).tolist()
    assert [negs[i][j] for i, j in enumerate(mined)] == MINED


@pytest.mark.parametrize("margin", [0.1, 1.0])
def test_semi_hard_losses_use_the_mined_negatives(margin):
    z_a, z_b, sim = angle_views()
    s_pos = torch.stack([sim[i, (i + 3) % 6] for i in range(6)])
    s_neg = torch.stack([sim[i, MINED[i]] for i in range(6)])
    expected = F.relu(s_neg - s_pos + margin).mean()
    torch.testing.assert_close(margin_triplet(z_a, z_b, margin, semi_hard=True), expected)
    assert not torch.isclose(margin_triplet(z_a, z_b, margin), expected)
    expected = (-F.logsigmoid(s_pos / 0.5) - F.logsigmoid(-s_neg / 0.5)).mean()
    torch.testing.assert_close(nt_logistic(z_a, z_b, 0.5, semi_hard=True), expected)


# --------------------------------------------------------------- Table 5 stats
def test_contrastive_stats_on_hand_built_cases():
    z = torch.eye(8)[:5]
    assert contrastive_stats(z, z)["accuracy"] == 1.0
    z_a, z_b, _ = angle_views()  # positives win for anchors 0 and 2 only (see ANGLES)
    assert contrastive_stats(z_a, z_b)["accuracy"] == pytest.approx(2 / 6)
    assert contrastive_stats(z, z.roll(1, 0))["accuracy"] == 0.0


def test_contrastive_entropy_tends_to_log_2n_minus_1_and_falls_with_temperature():
    z_a, z_b = pairs(10, 16, seed=7)
    stats = contrastive_stats(z_a, z_b, temperature=1e6)
    assert stats["entropy"] == pytest.approx(math.log(19), rel=1e-5)
    entropies = [contrastive_stats(z_a, z_b, temperature=t)["entropy"] for t in (2.0, 0.5, 0.1, 0.02)]
    assert all(x > y for x, y in zip(entropies, entropies[1:]))
    assert isinstance(stats["accuracy"], float) and isinstance(stats["entropy"], float)


def test_contrastive_stats_honours_normalize():
    # anchor a0 = (1, 0): its positive (1, 0.1) has the highest cosine, but the long
    # negative (5, 5) has the highest dot product
    z_a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z_b = torch.tensor([[1.0, 0.1], [5.0, 5.0]])
    with_l2 = contrastive_stats(z_a, z_b, normalize=True)
    without = contrastive_stats(z_a, z_b, normalize=False)
    assert set(with_l2) == {"accuracy", "entropy"}
    assert with_l2["accuracy"] > without["accuracy"]


# ------------------------------------------------------------------------ errors
ALL = [nt_xent, nt_xent_naive, nt_logistic, margin_triplet, contrastive_stats]
TEMPERATURED = [nt_xent, nt_xent_naive, nt_logistic, contrastive_stats]


@pytest.mark.parametrize("fn", TEMPERATURED)
@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan"), float("inf")])
def test_non_positive_temperature_is_a_config_error(fn, temperature):
    z_a, z_b = pairs(3, 4)
    with pytest.raises(ConfigError, match=rf"temperature must be > 0 and finite, got {temperature}"):
        fn(z_a, z_b, temperature)


@pytest.mark.parametrize("fn", ALL)
def test_a_single_pair_is_a_config_error(fn):
    with pytest.raises(ConfigError, match="N=1"):
        fn(torch.randn(1, 4), torch.randn(1, 4))


@pytest.mark.parametrize("fn", ALL)
@pytest.mark.parametrize("shapes", [((3, 4), (3, 5)), ((3, 4), (4, 4)), ((4,), (4,))])
def test_mismatched_shapes_are_a_config_error(fn, shapes):
    with pytest.raises(ConfigError, match=re_shape(shapes[0])):
        fn(torch.randn(*shapes[0]), torch.randn(*shapes[1]))


def re_shape(shape):
    return r"\(" + ", ".join(map(str, shape)) + r",?\)"


def test_negative_margin_is_a_config_error():
    with pytest.raises(ConfigError, match="-0.5"):
        margin_triplet(*pairs(3, 4), margin=-0.5)


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError):
        nt_xent(*pairs(3, 4), temperature=0)


# ------------------------------------------------------------- registry, dtypes
@pytest.mark.parametrize("name", ["nt_xent", "nt_logistic", "margin_triplet"])
def test_registry_losses_give_differentiable_scalars(name):
    z_a, z_b = pairs(6, 8, dtype=torch.float32)
    loss = LOSSES[name](z_a, z_b)
    assert loss.shape == () and loss.dtype == torch.float32
    loss.backward()
    assert torch.isfinite(z_a.grad).all() and z_a.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_are_close_to_float32(dtype):
    z_a, z_b = pairs(64, 128, dtype=torch.float32, noise=2.0)
    ref = nt_xent(z_a, z_b, 0.1)
    za, zb = z_a.detach().to(dtype).requires_grad_(), z_b.detach().to(dtype).requires_grad_()
    loss = nt_xent(za, zb, 0.1)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, ref, rtol=2e-2, atol=2e-2)
    loss.backward()
    assert za.grad.dtype == dtype and torch.isfinite(za.grad.float()).all()


def test_autocast_does_not_lower_the_similarity_precision():
    z_a, z_b = pairs(64, 128, dtype=torch.float32, noise=2.0)  # loss ~2.8
    ref = nt_xent(z_a, z_b, 0.05)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = nt_xent(z_a, z_b, 0.05)
        bf16_matmul = F.cross_entropy(*_bf16_logits(z_a, z_b, 0.05))
    torch.testing.assert_close(loss, ref, rtol=1e-6, atol=1e-6)
    assert (bf16_matmul - ref).abs() > 1e-4  # what a bfloat16 matmul would have cost


def _bf16_logits(z_a, z_b, temperature):
    z = F.normalize(torch.cat([z_a, z_b]), dim=1)
    logits = (z @ z.T).float() / temperature  # autocast: bfloat16 matmul
    logits.fill_diagonal_(torch.finfo(torch.float32).min)
    n = len(z_a)
    return logits, torch.cat([torch.arange(n, 2 * n), torch.arange(n)])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_autocast(dtype):
    z_a, z_b = (z.detach().cuda().requires_grad_() for z in pairs(256, 128, dtype=torch.float32))
    ref = nt_xent(z_a.double(), z_b.double(), 0.1)
    with torch.autocast("cuda", dtype=dtype):
        loss = nt_xent(z_a, z_b, 0.1)
    torch.testing.assert_close(loss.double(), ref, rtol=1e-5, atol=1e-5)
    loss.backward()
    assert torch.isfinite(z_a.grad).all()
