"""Tests for simclr_lite.augment_fig4: the other transformations of Fig. 4 and Fig. 5's operators."""
from __future__ import annotations

import pytest
import torch
import torchvision.transforms.functional as TF

from simclr_lite import augment_fig4 as F4
from test_augment import DEVICES, changed, gen, rand_images, smooth_images  # noqa: F401 (shared helpers)


def test_rotate_uses_90_180_270_degrees():
    x = rand_images(64)
    out = F4.rotate(x, generator=gen())
    seen = []
    for img, o in zip(x, out):
        ks = [k for k in (1, 2, 3) if torch.equal(o, torch.rot90(img, k, dims=(-2, -1)))]
        assert len(ks) == 1
        assert torch.allclose(o, TF.rotate(img, 90 * ks[0]), atol=1e-6)   # counter-clockwise, as torchvision
        seen += ks
    assert set(seen) == {1, 2, 3}


def test_cutout_zeroes_one_square_inside_the_image():
    x = rand_images(64, lo=0.1)
    out = F4.cutout(x, size_fraction=0.5, generator=gen())
    sides = []
    for img, o in zip(x, out):
        hole = (o == 0).all(0)
        rows, cols = hole.any(1).nonzero().flatten(), hole.any(0).nonzero().flatten()
        side = len(rows)
        assert side == len(cols) and 1 <= side <= 16
        assert hole.sum() == side * side                       # a full square
        assert torch.equal(o[:, ~hole], img[:, ~hole])         # the rest untouched
        sides.append(side)
    assert min(sides) <= 4 and max(sides) >= 14                # side ~ U{1..16}


@pytest.mark.parametrize("std", [(0.0, 0.0), (0.05, 0.05), (0.0, 0.1)])
def test_gaussian_noise(std):
    x = torch.full((32, 3, 32, 32), 0.5)
    out = F4.gaussian_noise(x, std=std, generator=gen())
    assert out.min() >= 0 and out.max() <= 1
    per_image = (out - x).flatten(1).std(1)
    assert (per_image <= std[1] * 1.1 + 1e-7).all() and (per_image >= std[0] * 0.9).all()
    if std[1] > std[0]:
        assert per_image.max() - per_image.min() > 0.05        # sigma drawn per image


def test_sobel_is_normalised_edge_magnitude():
    x = torch.zeros(3, 3, 16, 16)
    x[0, :, :, 8:] = 1.0            # vertical edge
    x[1] = 0.3                      # flat image
    x[2] = rand_images(1, 16, 16)[0]
    out = F4.sobel(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 0], out[:, 2])
    assert out[0].amax() == 1 and out[2].amax() == 1
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    edge = torch.zeros(16, 16)
    edge[:, 7:9] = 1.0              # the 3x3 kernel sees the step from columns 7 and 8
    assert torch.allclose(out[0, 0], edge, atol=1e-6)


# ----------------------------------------------------------------------------- probabilities and parameter ranges

@pytest.mark.parametrize("name", sorted(F4.OPERATORS))
@pytest.mark.parametrize("device", DEVICES)
def test_operators_of_fig5(name, device):
    assert set(F4.OPERATORS) == {"crop", "cutout", "color", "sobel", "noise", "blur", "rotate"}
    x = rand_images(16).to(device)
    op = F4.OPERATORS[name]
    out = op(x, gen(0, device))
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, op(x, gen(0, device)))
    assert changed(out, x).any()
    if name != "sobel":
        assert not torch.equal(out, op(x, gen(1, device)))


@pytest.mark.parametrize("make,match", [
    (lambda: F4.rotate(torch.zeros(2, 3, 8, 6)), r"\(2, 3, 8, 6\)"),
    (lambda: F4.cutout(torch.zeros(2, 3, 8, 8), size_fraction=0.0), r"0\.0"),
    (lambda: F4.gaussian_noise(torch.zeros(2, 3, 8, 8), std=(-0.1, 0.1)), r"-0\.1"),
    (lambda: F4.sobel(torch.zeros(3, 8, 8)), r"\(3, 8, 8\)"),
])
def test_bad_inputs_raise_value_error_naming_the_value(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_operators_never_modify_their_input_and_stay_on_meta():
    x = rand_images(16)
    keep = x.clone()
    for op in F4.OPERATORS.values():
        op(x, gen())
    assert torch.equal(x, keep)
    xf = torch.empty(4, 3, 32, 32, device="meta")
    for op in F4.OPERATORS.values():
        assert op(xf, None).device.type == "meta"
