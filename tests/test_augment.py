"""Tests for simclr_lite.augment: SimCLR's batched augmentations (Appendix A, Fig. 4, Fig. 5).

Everything runs on CPU in a few seconds; CUDA cases are skipped without a GPU.
Random tests use fixed seeds and tolerances of several standard errors, so
they are deterministic and cannot flake.
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image

from simclr_lite import augment as A
from simclr_lite import augment_fig4 as F4
from simclr_lite import augment_reference as R

@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: small CPU ops on a shared 2-core machine run several times faster than with 2
    (and DataLoader workers, where the per-image reference pipeline runs, also use one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def gen(seed: int = 0, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def rand_images(b: int, h: int = 32, w: int = 32, seed: int = 0, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(b, 3, h, w, generator=gen(seed))


def smooth_images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """'Real-ish' uint8 images: 4x4 colour noise upsampled bicubically, plus a little fine noise."""
    g = gen(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    x = F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    x = x + 0.05 * torch.randn(n, 3, size, size, generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def changed(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B,) bool: which images differ."""
    return (a - b).abs().flatten(1).amax(1) > 1e-6


# ----------------------------------------------------------------------------- crop boxes

def tv_boxes(n: int, h: int, w: int, scale, ratio, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    img = torch.empty(3, h, w)
    return torch.tensor([T.RandomResizedCrop.get_params(img, list(scale), list(ratio)) for _ in range(n)])


@pytest.mark.parametrize("h,w,scale,ratio", [
    (32, 32, (0.08, 1.0), (3 / 4, 4 / 3)),
    (224, 224, (0.08, 1.0), (3 / 4, 4 / 3)),
    (24, 64, (0.08, 1.0), (3 / 4, 4 / 3)),   # wide: many tries fail, some images fall back
    (32, 32, (0.5, 1.0), (0.5, 2.0)),
])
def test_crop_box_distribution_matches_torchvision(h, w, scale, ratio):
    ours = A.sample_crop_boxes(20000, h, w, scale, ratio, generator=gen(1)).double()
    ref = tv_boxes(3000, h, w, scale, ratio).double()
    for boxes in (ours, ref):   # every box lies inside the image
        top, left, bh, bw = boxes.unbind(1)
        assert (top >= 0).all() and (left >= 0).all() and (top + bh <= h).all() and (left + bw <= w).all()
        assert (bh > 0).all() and (bw > 0).all()

    def stats(boxes):
        top, left, bh, bw = boxes.unbind(1)
        area, log_aspect = bh * bw / (h * w), torch.log(bw / bh)
        q = torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9], dtype=torch.float64)
        return {"area_mean": area.mean(), "area_q": area.quantile(q), "aspect_mean": log_aspect.mean(),
                "aspect_q": log_aspect.quantile(q), "top": (top + bh / 2).mean() / h, "left": (left + bw / 2).mean() / w}

    s_ours, s_ref = stats(ours), stats(ref)
    # standard errors with 3000 reference draws: area ~0.005, log-aspect ~0.003: tolerances are > 4 of them
    for key, tol in [("area_mean", 0.02), ("area_q", 0.035), ("aspect_mean", 0.02), ("aspect_q", 0.04),
                     ("top", 0.02), ("left", 0.02)]:
        assert torch.allclose(s_ours[key], s_ref[key], atol=tol), (key, s_ours[key], s_ref[key])


@pytest.mark.parametrize("h,w,ratio", [(32, 32, (3 / 4, 4 / 3)), (24, 64, (3 / 4, 4 / 3)), (64, 24, (3 / 4, 4 / 3)),
                                       (30, 40, (3 / 4, 4 / 3))])
def test_crop_box_fallback_is_torchvisions_central_crop(h, w, ratio):
    scale = (2.0, 3.0)   # area larger than the image: all 10 tries fail
    ours = A.sample_crop_boxes(8, h, w, scale, ratio, generator=gen())
    ref = tv_boxes(1, h, w, scale, ratio)
    assert torch.equal(ours, ref.expand(8, 4))


def test_crop_boxes_differ_per_image_and_follow_the_generator():
    a = A.sample_crop_boxes(64, 32, 32, generator=gen(0))
    assert len({tuple(b) for b in a.tolist()}) > 50
    assert torch.equal(a, A.sample_crop_boxes(64, 32, 32, generator=gen(0)))
    assert not torch.equal(a, A.sample_crop_boxes(64, 32, 32, generator=gen(1)))


@pytest.mark.parametrize("scale,ratio", [((0.5, 0.1), (3 / 4, 4 / 3)), ((0.0, 1.0), (3 / 4, 4 / 3)),
                                         ((0.08, 1.0), (4 / 3, 3 / 4)), ((0.08,), (3 / 4, 4 / 3))])
def test_crop_boxes_reject_bad_ranges(scale, ratio):
    with pytest.raises(ValueError, match="scale|ratio"):
        A.sample_crop_boxes(4, 32, 32, scale, ratio)


# ----------------------------------------------------------------------------- ops vs torchvision at fixed parameters

@pytest.mark.parametrize("size", [16, 32, 48, (20, 28)])
@pytest.mark.parametrize("hw", [(32, 32), (40, 24)])
@pytest.mark.parametrize("device", DEVICES)
def test_resized_crop_matches_torchvision(size, hw, device):
    x = rand_images(16, *hw)
    boxes = A.sample_crop_boxes(16, *hw, generator=gen(3))
    ours = A.resized_crop(x.to(device), boxes.to(device), size).cpu()
    out = [size, size] if isinstance(size, int) else list(size)
    ref = torch.stack([TF.resized_crop(x[i], *boxes[i].tolist(), out, antialias=False) for i in range(16)])
    # float rounding of grid_sample's normalised coordinates only
    assert torch.allclose(ours, ref, atol=1e-5), (ours - ref).abs().max()


def test_resized_crop_flip_mirrors_chosen_images():
    x = rand_images(8)
    boxes = A.sample_crop_boxes(8, 32, 32, generator=gen(4))
    flip = torch.tensor([True, False] * 4)
    plain, flipped = A.resized_crop(x, boxes, 24), A.resized_crop(x, boxes, 24, flip=flip)
    assert torch.allclose(flipped[flip], plain[flip].flip(-1), atol=1e-6)
    assert torch.equal(flipped[~flip], plain[~flip])


@pytest.mark.parametrize("ours,theirs,low,high", [
    (R.adjust_brightness, TF.adjust_brightness, 0.0, 2.0),
    (R.adjust_contrast, TF.adjust_contrast, 0.0, 2.0),
    (R.adjust_saturation, TF.adjust_saturation, 0.0, 2.0),
    (A.adjust_hue, TF.adjust_hue, -0.5, 0.5),
])
@pytest.mark.parametrize("device", DEVICES)
def test_colour_ops_match_torchvision(ours, theirs, low, high, device):
    x = rand_images(12)
    x[0] = 0.5       # a gray image (hue undefined)
    x[1, :, :16] = x[1, 0, :16]   # gray rows, and ties between channels
    factors = torch.linspace(low, high, 12)
    out = ours(x.to(device), factors.to(device)).cpu()
    ref = torch.stack([theirs(x[i], float(factors[i])) for i in range(12)])
    # blends are torchvision's formula (exact); the fused hue differs from its HSV round trip by float rounding
    atol = 1e-5 if ours is not A.adjust_hue else 1e-4
    assert torch.allclose(out, ref, atol=atol), (out - ref).abs().max()


def test_grayscale_and_color_drop_match_torchvision():
    x = rand_images(6)
    ref = torch.stack([TF.rgb_to_grayscale(img, num_output_channels=3) for img in x])
    assert torch.allclose(A.random_grayscale(x, p=1.0), ref, atol=1e-6)
    assert torch.allclose(F4.color_drop(x), ref, atol=1e-6)
    assert torch.equal(A.random_grayscale(x, p=0.0), x)


@pytest.mark.parametrize("side,sigma", [(32, 0.5), (32, 1.7), (64, 1.0), (96, 2.0)])
@pytest.mark.parametrize("device", DEVICES)
def test_gaussian_blur_matches_torchvision(side, sigma, device):
    x = rand_images(4, side, side)
    k = A.blur_kernel_size(side)
    ours = A.gaussian_blur(x.to(device), sigma=(sigma, sigma), p=1.0).cpu()
    ref = torch.stack([TF.gaussian_blur(img, [k, k], [sigma, sigma]) for img in x])
    atol = 1e-5 if device == "cpu" else 3e-3   # cuDNN may convolve in TF32 (torch.backends.cudnn.allow_tf32)
    assert torch.allclose(ours, ref, atol=atol), (ours - ref).abs().max()
    assert torch.equal(A.gaussian_blur(x, sigma=(sigma, sigma), p=0.0), x)


@pytest.mark.parametrize("side,k", [(10, 3), (32, 3), (64, 7), (96, 9), (224, 23)])
def test_blur_kernel_is_ten_percent_of_the_side_and_odd(side, k):
    assert A.blur_kernel_size(side) == k


@pytest.mark.parametrize("name,p", [("jitter", 0.8), ("grayscale", 0.2), ("blur", 0.5), ("flip", 0.5),
                                    ("jitter", 0.3)])
@pytest.mark.parametrize("device", DEVICES)
def test_fraction_of_images_transformed(name, p, device):
    n = 4000
    x = rand_images(n, 8, 8).to(device)
    g = gen(5, device)
    if name == "jitter":
        out = A.color_jitter(x, brightness=0.5, p=p, generator=g)
    elif name == "grayscale":
        out = A.random_grayscale(x, p=p, generator=g)
    elif name == "blur":
        out = A.gaussian_blur(x, p=p, generator=g)
    else:
        out = A.horizontal_flip(x, p=p, generator=g)
    frac = changed(out, x).double().mean().item()
    assert abs(frac - p) < 0.04, frac            # standard error <= 0.008


def test_color_distortion_grays_about_a_fifth():
    x = rand_images(4000, 8, 8)
    out = A.color_distortion(x, strength=1.0, generator=gen(6))
    gray = (out.amax(1) - out.amin(1)).flatten(1).amax(1) < 1e-6
    # grayscale p=0.2; jitter cannot make a colour image gray (saturation factor >= 0.2)
    assert abs(gray.double().mean().item() - 0.2) < 0.03


@pytest.mark.parametrize("kind", ["brightness", "contrast", "saturation"])
def test_jitter_factors_in_range_and_each_op_keeps_its_invariant(kind):
    x = rand_images(2000, 6, 6, lo=0.2, hi=0.5)   # no clipping for factors in [0.6, 1.4]
    out = A.color_jitter(x, **{kind: 0.4}, p=1.0, generator=gen(7))
    gray_in, gray_out = A.rgb_to_gray(x), A.rgb_to_gray(out)
    # (luma weights sum to 0.9999, hence atol 1e-4 on gray levels)
    if kind == "brightness":   # every pixel scaled by one factor
        f = (out / x).flatten(1)
        assert torch.allclose(f, f[:, :1], atol=1e-5)
        f = f[:, 0]
    elif kind == "contrast":   # mean gray level kept; spread around it scaled by f
        assert torch.allclose(gray_out.mean((1, 2, 3)), gray_in.mean((1, 2, 3)), atol=1e-4)
        f = (out - out.mean((1, 2, 3), keepdim=True)).flatten(1).std(1) / x.flatten(1).std(1)
    else:                      # gray image kept; colour (x - gray) scaled by f
        assert torch.allclose(gray_out, gray_in, atol=1e-4)
        f = (out - gray_out).flatten(1).norm(dim=1) / (x - gray_in).flatten(1).norm(dim=1)
    assert 0.6 - 1e-3 <= f.min() < 0.65 and 1.35 < f.max() <= 1.4 + 1e-3, (f.min(), f.max())


def test_hue_shift_in_range_and_keeps_max_and_min():
    x = rand_images(500, 6, 6)
    out = A.color_jitter(x, hue=0.1, p=1.0, generator=gen(7))
    assert torch.allclose(out.amax(1), x.amax(1), atol=1e-5) and torch.allclose(out.amin(1), x.amin(1), atol=1e-5)
    red = torch.zeros(2000, 3, 2, 2)
    red[:, 0] = 1.0                                      # hue 0; shifted by d it becomes (1, 6d, 0) or (1, 0, -6d)
    out = A.color_jitter(red, hue=0.1, p=1.0, generator=gen(8))
    shift = (out[:, 1, 0, 0] - out[:, 2, 0, 0]) / 6
    assert torch.allclose(out[:, 0], torch.ones_like(out[:, 0]))
    assert -0.1 - 1e-6 <= shift.min() < -0.095 and 0.095 < shift.max() <= 0.1 + 1e-6
    assert abs(shift.mean()) < 0.005


def test_jitter_with_zero_amounts_is_identity():
    x = rand_images(64)
    assert torch.equal(A.color_jitter(x, 0.0, 0.0, 0.0, 0.0, p=1.0, generator=gen()), x)
    out = A.color_distortion(x, strength=0.0, generator=gen())   # only the random grayscale is left
    gray = F4.color_drop(x)
    same, grayed = ~changed(out, x), ~changed(out, gray)
    assert (same | grayed).all() and grayed.any() and same.any()


@pytest.mark.parametrize("device", DEVICES)
def test_jitter_order_is_a_uniform_random_permutation_per_image(device):
    """With fixed factors the 4 ops give a different result for each order: compare with torchvision's ops."""
    n = 2400
    x = rand_images(1, 4, 4, seed=9).expand(n, 3, 4, 4)
    factors = {"brightness": (1.5, 1.5), "contrast": (0.5, 0.5), "saturation": (0.3, 0.3), "hue": (0.25, 0.25)}
    out = A.color_jitter(x.to(device), **factors, p=1.0, generator=gen(10, device)).cpu()
    ops = [lambda im: TF.adjust_brightness(im, 1.5), lambda im: TF.adjust_contrast(im, 0.5),
           lambda im: TF.adjust_saturation(im, 0.3), lambda im: TF.adjust_hue(im, 0.25)]
    refs = []
    for perm in itertools.permutations(range(4)):
        im = x[0]
        for i in perm:
            im = ops[i](im)
        refs.append(im)
    refs = torch.stack(refs)                                            # (24, 3, 4, 4)
    dist = (out[:, None] - refs[None]).abs().flatten(2).amax(2)         # (n, 24)
    assert (dist.min(1).values < 1e-4).all()                            # every output is one of the 24 orders
    # some orders give the same image (e.g. brightness and contrast commute without clipping): group them
    same = (refs[:, None] - refs[None]).abs().flatten(2).amax(2) < 1e-4  # (24, 24)
    groups = {tuple(row.nonzero().flatten().tolist()) for row in same}
    assert len(groups) >= 10
    for group in groups:
        count = (dist[:, list(group)].min(1).values < 1e-4).sum().item()
        expected = n * len(group) / 24                                  # uniform permutations
        assert abs(count - expected) < 5 * math.sqrt(expected), (group, count, expected)


# ----------------------------------------------------------------------------- SimCLRAugment

@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
@pytest.mark.parametrize("hw,size", [((32, 32), 32), ((32, 32), 24), ((40, 48), 32)])
@pytest.mark.parametrize("blur", [False, True])
def test_simclr_augment_shape_dtype_range(dtype, hw, size, blur):
    imgs = smooth_images(8, 32)
    imgs = F.interpolate(imgs.float(), size=hw).to(torch.uint8) if hw != (32, 32) else imgs
    imgs = imgs if dtype == torch.uint8 else (imgs.to(dtype) / 255)
    out = A.SimCLRAugment(size, strength=1.0, blur=blur)(imgs, generator=gen())
    assert out.shape == (8, 3, size, size) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1


def test_uint8_and_float_inputs_give_the_same_views():
    imgs = smooth_images(8)
    aug = A.SimCLRAugment(32, blur=True)
    assert torch.allclose(aug(imgs, generator=gen(2)), aug(imgs.float() / 255, generator=gen(2)), atol=1e-6)


def test_identical_images_get_independent_views():
    imgs = smooth_images(1).expand(16, 3, 32, 32)
    aug = A.SimCLRAugment(32)
    v1, v2 = aug(imgs, generator=gen()), aug(imgs, generator=gen(1))
    assert changed(v1[:1], v1[1:]).all()                 # every copy differs from the first
    assert changed(v1, v2).all()                         # the two views differ


@pytest.mark.parametrize("device", DEVICES)
def test_deterministic_under_a_seed(device):
    imgs = smooth_images(16).to(device)
    aug = A.SimCLRAugment(32, strength=1.0, blur=True)
    a, b = aug(imgs, generator=gen(0, device)), aug(imgs, generator=gen(0, device))
    c = aug(imgs, generator=gen(1, device))
    assert a.device.type == device and torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
def test_inputs_are_never_modified(p):
    """Some steps write into tensors in place (on CPU); never into the caller's."""
    x = rand_images(16)
    keep = x.clone()
    A.color_jitter(x, 0.4, 0.4, 0.4, 0.1, p=p, generator=gen())
    A.random_grayscale(x, p=p, generator=gen())
    A.color_distortion(x, 1.0, generator=gen())
    A.SimCLRAugment(32, blur=True)(x, generator=gen())
    assert torch.equal(x, keep)


@pytest.mark.parametrize("device", DEVICES)
def test_stays_on_device_with_default_rng(device):
    imgs = smooth_images(4).to(device)
    out = A.SimCLRAugment(24, blur=True)(imgs)
    assert out.device.type == device and out.shape == (4, 3, 24, 24)


def test_no_host_sync_meta_device():
    """Meta tensors carry no data: any .item()/.cpu()/data-dependent step would raise here."""
    x = torch.empty(4, 3, 32, 32, dtype=torch.uint8, device="meta")
    assert A.SimCLRAugment(24, blur=True)(x).shape == (4, 3, 24, 24)


def test_no_host_calls_on_cpu(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("augmentation moved data to the host")
    for name in ("cpu", "item", "tolist", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    out = A.SimCLRAugment(32, blur=True)(smooth_images(8), generator=gen())
    assert out.device.type == "cpu"


@pytest.mark.parametrize("strength,blur", [(0.5, False), (1.0, True)])
def test_output_statistics_match_torchvision_pipeline(strength, blur):
    """Same distribution as the per-image reference: 4096 batched views vs 1024 torchvision views of 512 images.

    The standard error of each difference is <= 0.0065, so the 0.02 tolerance is > 3 of them
    (and the seeds are fixed); the measured differences are < 0.005.
    """
    imgs = smooth_images(512, seed=11)
    aug = A.SimCLRAugment(32, strength, blur)
    ours = torch.cat([aug(imgs, generator=gen(s)) for s in range(8)])
    torch.manual_seed(0)
    pipe = R.torchvision_pipeline(32, strength, blur)
    ref = torch.stack([pipe(img) for _ in range(2) for img in imgs])
    stats = {
        "pixel mean": lambda v: v.mean(),
        "pixel std": lambda v: v.std(),
        "colourfulness": lambda v: (v.amax(1) - v.amin(1)).mean(),    # spread across channels
        "contrast": lambda v: v.flatten(1).std(1).mean(),              # spread across pixels
        "brightness spread": lambda v: v.flatten(1).mean(1).std(),     # spread of image means
    }
    for name, stat in stats.items():
        assert abs(stat(ours) - stat(ref)) < 0.02, (name, stat(ours), stat(ref))


def test_repr_lists_parameters():
    text = repr(A.SimCLRAugment(96, strength=1.0, blur=True))
    for part in ("size=96", "strength=1.0", "blur=True", "scale=(0.08, 1.0)", "ratio=(0.75, 1.333)"):
        assert part in text, text


# ----------------------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("make,match", [
    (lambda: A.SimCLRAugment(32, strength=-0.5), r"-0\.5"),
    (lambda: A.SimCLRAugment(32, strength=3.0), r"3\.0"),
    (lambda: A.SimCLRAugment(0), "size.*0"),
    (lambda: A.SimCLRAugment(32, scale=(0.9, 0.1)), r"\(0\.9, 0\.1\)"),
    (lambda: A.SimCLRAugment(32)(torch.zeros(3, 32, 32, dtype=torch.uint8)), r"\(3, 32, 32\)"),
    (lambda: A.SimCLRAugment(32)(torch.zeros(2, 1, 32, 32)), r"\(2, 1, 32, 32\)"),
    (lambda: A.SimCLRAugment(32)(torch.zeros(2, 3, 32, 32, dtype=torch.int32)), "int32"),
    (lambda: A.color_jitter(torch.zeros(2, 3, 8, 8), hue=0.7), r"0\.7"),
    (lambda: A.color_jitter(torch.zeros(2, 3, 8, 8), brightness=-1.0), r"-1\.0"),
    (lambda: A.random_grayscale(torch.zeros(2, 3, 8, 8), p=1.5), r"1\.5"),
    (lambda: A.color_distortion(torch.zeros(2, 3, 8, 8), strength=-1), "-1"),
    (lambda: A.gaussian_blur(torch.zeros(2, 3, 8, 8), sigma=(2.0, 0.1)), r"\(2\.0, 0\.1\)"),
])
def test_bad_inputs_raise_value_error_naming_the_value(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# ----------------------------------------------------------------------------- fused colour steps: same views

def _where_only(mask, fn, x, inplace=False):
    """The device (GPU) code path of ``_apply_where``, forced on the CPU."""
    return torch.where(mask.view(-1, 1, 1, 1), fn(x, None), x)


#: Views are float32: compared with the stored (golden) views to float rounding. Measured against them with
#: torch's AVX-512, AVX2 and plain (no SIMD) CPU kernels: <= 1.1e-6; one grey level is 1/255 = 3.9e-3, and a
#: change of the maths (e.g. the luma weights 0.2989 -> 0.299) moves views by ~1e-4.
VIEW_ATOL = 1e-5
VIEW_ATOL_CUDA = 1e-4      # another device's arithmetic (cuDNN with TF32 off); not measured against a GPU yet
GOLDEN = Path(__file__).resolve().parent / "golden" / "augment_views.npz"


@pytest.fixture(scope="module")
def golden():
    """tests/golden/augment_views.npz: inputs and the views of the code before the fused colour steps
    (``tests/augment_v1.py`` of commit c0d87ce, frozen at 755e543); made by tests/golden/make_golden.py."""
    with np.load(GOLDEN, allow_pickle=False) as z:
        return {k: torch.from_numpy(z[k]) for k in z.files}


def golden_case(golden, i):
    """(uint8 images, stored views, the SimCLRAugment of that case, generator seed)."""
    strength, blur, size, s_lo, s_hi, seed = golden[f"case{i}_params"].tolist()
    aug = A.SimCLRAugment(int(size), strength, bool(blur), scale=(s_lo, s_hi))
    return golden[f"case{i}_images"], golden[f"case{i}_views"], aug, int(seed)


def assert_same_views(new: torch.Tensor, stored: torch.Tensor, atol: float = VIEW_ATOL) -> None:
    assert new.shape == stored.shape and new.dtype == stored.dtype, (new.shape, new.dtype)
    err = (new.cpu() - stored).abs().max().item()
    assert err <= atol, f"views differ from the golden views by up to {err:.3g} (> {atol})"


@pytest.mark.parametrize("device_path", [False, True, "cuda"])
@pytest.mark.parametrize("case", range(4))
def test_same_views_as_the_golden_views(golden, case, device_path, monkeypatch):
    """For a given generator SimCLRAugment makes the views of the code before the fused colour steps (stored),
    on the CPU path, on the GPU path (torch.where, forced on the CPU) and on a GPU (the CPU generator's tables
    applied there: a CUDA generator draws other numbers)."""
    images, views, aug, seed = golden_case(golden, case)
    if device_path == "cuda":
        if not torch.cuda.is_available():
            pytest.skip("no CUDA")
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
        tables = aug.draw(*images.shape[:1], *images.shape[2:], generator=gen(seed), device="cpu")
        new = aug.apply(images.cuda().float() / 255, {k: v.cuda() for k, v in tables.items()})
        assert_same_views(new, views, VIEW_ATOL_CUDA)
        imgs, dev = images.cuda(), "cuda"
    else:
        if device_path:
            monkeypatch.setattr(A, "_apply_where", _where_only)
        assert_same_views(aug(images, generator=gen(seed)), views)
        imgs, dev = images, "cpu"
    # concat's one apply for several chunks: the same views as one call per chunk
    assert torch.equal(aug._concat_joined([imgs[:5], imgs[5:]], [gen(seed, dev), gen(seed + 9, dev)])[:5],
                       aug(imgs[:5], generator=gen(seed, dev)))


def test_color_jitter_same_as_the_golden_output(golden, monkeypatch):
    args = dict(brightness=(0.3, 1.7), contrast=0.9, saturation=0.0, hue=0.3, p=0.6)   # as make_golden.JITTER
    x, stored = golden["jitter_images"], golden["jitter_out"]
    assert_same_views(A.color_jitter(x, **args, generator=gen(4)), stored)
    monkeypatch.setattr(A, "_apply_where", _where_only)
    assert_same_views(A.color_jitter(x, **args, generator=gen(4)), stored)


def test_golden_comparison_catches_small_real_changes(golden):
    """The tolerance is not vacuous: one grey level on one pixel, a 2% stronger colour distortion or another
    seed each fail the comparison the tests above make."""
    images, views, aug, seed = golden_case(golden, 1)
    assert_same_views(aug(images, generator=gen(seed)), views)                 # the real thing passes
    nudged = views.clone()
    nudged[3, 1, 10, 10] += 1 / 255
    stronger = A.SimCLRAugment(aug.size, aug.strength * 1.02, aug.blur, scale=aug.scale)
    for changed_views in (nudged, stronger(images, generator=gen(seed)), aug(images, generator=gen(seed + 1))):
        with pytest.raises(AssertionError, match="differ from the golden views"):
            assert_same_views(changed_views, views)


def test_concat_equals_one_call_per_chunk():
    imgs = smooth_images(24)
    aug = A.SimCLRAugment(24, strength=1.0, blur=True)
    chunks = [imgs[:8], imgs[8:], imgs[:5].float() / 255]
    gens = [gen(1), gen(2), gen(3)]
    expected = torch.cat([aug(c, generator=g) for c, g in zip(chunks, [gen(1), gen(2), gen(3)])])
    assert torch.equal(aug.concat(chunks, gens), expected)
    # the GPU path: one apply for all the chunks (on a CPU, concat applies chunk by chunk)
    assert torch.equal(aug._concat_joined(chunks, [gen(1), gen(2), gen(3)]), expected)
    with pytest.raises(ValueError, match="one generator per image batch"):
        aug.concat(chunks, gens[:2])
    with pytest.raises(ValueError, match="one image shape"):
        aug.concat([imgs, imgs[:, :, :16]], [None, None])


def _kernel_count(fn) -> int:
    """Non-view aten ops (each one kernel launch on a GPU) that ``fn`` dispatches."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if not func.is_view and func.overloadpacket.__name__ not in ("empty", "scalar_tensor", "lift_fresh"):
                Count.n += 1
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return Count.n


def test_far_fewer_kernels_per_view_on_the_device_path(golden):
    """Meta tensors take the GPU code path: 294 kernels per view before (counted on the old code by
    tests/golden/make_golden.py, torch 2.14.1), 216 now, 144.5 per view with concat."""
    x = torch.empty(512, 3, 32, 32, dtype=torch.uint8, device="meta")
    aug = A.SimCLRAugment(32)
    old = int(golden["v1_kernels_per_view"])
    one = _kernel_count(lambda: aug(x))
    two = _kernel_count(lambda: aug.concat([x, x], [None, None]))
    assert old >= 280 and one <= 0.75 * old and two / 2 <= 0.5 * old, (old, one, two)
