"""SimCLR's data augmentations, applied to whole batches on the training device.

SimCLR (Chen et al., 2020, arXiv:2002.05709) learns by making two random
"views" of every image agree. Section 3 and Fig. 5 show that the choice of
augmentations matters more than almost anything else: random crop (+ flip)
composed with strong colour distortion is the key pair, and Table 1 shows that
contrastive learning wants *stronger* colour distortion than supervised
learning. Appendix A gives the exact recipe, implemented here:

1. random crop with area fraction ~ U(0.08, 1) and log aspect ratio ~
   U(log 3/4, log 4/3), resized back to ``size``, then a horizontal flip (p=0.5);
2. colour distortion of strength ``s``: ``ColorJitter(0.8s, 0.8s, 0.8s, 0.2s)``
   applied with p=0.8 (its four parts in random order), then grayscale with p=0.2;
3. optionally (ImageNet, not CIFAR-10) Gaussian blur with p=0.5,
   sigma ~ U(0.1, 2) and a kernel of 10% of the image side.

Instead of running torchvision's per-image transforms in DataLoader workers
(``augment_reference.torchvision_pipeline``, the reference), every op below
takes a float batch ``x`` of shape (B, 3, H, W) in [0, 1], draws independent
random parameters *per image* on ``x``'s device, and never leaves that device
(no ``.cpu()``, ``.item()`` or host syncs). Pass a ``torch.Generator`` living
on ``x``'s device for reproducible views. The rest of Fig. 4 and Fig. 5's
operators: ``augment_fig4``. Book: chapter 2 (``book/02_augmentations.ipynb``).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import ConfigError

__all__ = [
    "sample_crop_boxes", "resized_crop", "random_resized_crop", "horizontal_flip",
    "rgb_to_gray", "adjust_hue",
    "color_jitter", "random_grayscale", "color_distortion", "blur_kernel_size", "gaussian_blur", "SimCLRAugment",
]

# torchvision's rgb_to_grayscale weights (ITU-R 601-2 luma; torchvision writes 0.299 as 0.2989).
LUMA = (0.2989, 0.587, 0.114)
CROP_TRIES = 10  # torchvision's RandomResizedCrop tries 10 boxes, then falls back to a central crop


# ----------------------------------------------------------------------------- helpers

def check_strength(strength: float) -> None:
    """The one rule for the colour strength s (Appendix A), used by every augmentation here and by
    ``Config.validate``: s in [0, 2.5], as the hue jitter 0.2 s must stay at most 0.5."""
    if not 0.0 <= strength <= 2.5:   # also refuses NaN
        raise ConfigError(f"colour strength must be in [0, 2.5] (hue = 0.2 * strength <= 0.5), got {strength}; "
                          f"the paper uses 0.5 for CIFAR-10, 1.0 for ImageNet")


def check_images(x: Tensor, name: str = "x") -> None:
    """Raise ValueError unless ``x`` is a float (B, 3, H, W) batch."""
    if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != 3:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a batch of RGB images of shape (B, 3, H, W), got {shape}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a float tensor with values in [0, 1], got dtype {x.dtype}")


def _check_p(p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"probability p must be in [0, 1], got {p}")


def check_range(name: str, lo_hi: Sequence[float], low: float = 0.0) -> tuple[float, float]:
    """Validate a (min, max) pair with ``low <= min <= max``."""
    if len(lo_hi) != 2 or not low <= lo_hi[0] <= lo_hi[1]:
        raise ValueError(f"{name} must be a pair (min, max) with {low} <= min <= max, got {tuple(lo_hi)}")
    return float(lo_hi[0]), float(lo_hi[1])


def uniform(low: float, high: float, shape: tuple[int, ...], device: torch.device,
             generator: torch.Generator | None) -> Tensor:
    """U(low, high) samples of ``shape`` on ``device``."""
    return low + (high - low) * torch.rand(shape, device=device, generator=generator)


def coin(p: float, n: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
    """n independent Bernoulli(p) draws as a bool tensor."""
    return torch.rand(n, device=device, generator=generator) < p


def per_image(v: Tensor) -> Tensor:
    """(B,) -> (B, 1, 1, 1), to broadcast one value per image."""
    return v.view(-1, 1, 1, 1)


# ----------------------------------------------------------------------------- crop & flip

def sample_crop_boxes(batch: int, height: int, width: int,
                      scale: Sequence[float] = (0.08, 1.0), ratio: Sequence[float] = (3 / 4, 4 / 3),
                      generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> Tensor:
    """Draw ``batch`` crop boxes exactly as ``torchvision.transforms.RandomResizedCrop.get_params``.

    Each box has area ``U(scale) * height * width`` and aspect ratio w/h with
    ``log(w/h) ~ U(log ratio)``; sides are rounded to integers. Like torchvision
    we make 10 tries per image and keep the first box that fits; if none fits
    (rare: very wide or tall images, or ``scale`` above 1) we take torchvision's
    central fallback crop. All 10 tries are drawn at once, so the distribution
    equals torchvision's (Appendix A: "random crop with uniform area 0.08 to 1.0
    and aspect ratio 3/4 to 4/3").

    Returns an int64 tensor (batch, 4) of ``(top, left, h, w)`` on ``device``
    (default: the generator's device, else CPU).
    """
    s_lo, s_hi = check_range("scale", scale, low=1e-12)
    r_lo, r_hi = check_range("ratio", ratio, low=1e-12)
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    shape = (batch, CROP_TRIES)
    area = height * width * uniform(s_lo, s_hi, shape, device, generator)
    aspect = torch.exp(uniform(math.log(r_lo), math.log(r_hi), shape, device, generator))
    w = torch.round(torch.sqrt(area * aspect))
    h = torch.round(torch.sqrt(area / aspect))
    fits = (w.clamp(1, width) == w) & (h.clamp(1, height) == h)   # 1 <= side <= image side (sides are integers)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # index of the first box that fits
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)

    # torchvision's fallback after 10 failed tries: a central crop with the closest allowed ratio.
    in_ratio = width / height
    fw, fh = width, height
    if in_ratio < r_lo:
        fh = int(round(width / r_lo))
    elif in_ratio > r_hi:
        fw = int(round(height * r_hi))
    ok = fits.any(dim=1)
    w, h = torch.where(ok, w, float(fw)), torch.where(ok, h, float(fh))

    # offsets uniform over all positions where the box fits (torch.randint(0, n - side + 1))
    u = torch.rand(batch, 2, device=device, generator=generator)
    dh, dw = height - h, width - w
    top = torch.minimum(torch.floor(u[:, 0] * (dh + 1)), dh)
    left = torch.minimum(torch.floor(u[:, 1] * (dw + 1)), dw)
    top = torch.where(ok, top, float((height - fh) // 2))
    left = torch.where(ok, left, float((width - fw) // 2))
    return torch.stack([top, left, h, w], dim=1).long()


def resized_crop(x: Tensor, boxes: Tensor, size: int | tuple[int, int],
                 flip: Tensor | None = None) -> Tensor:
    """Crop box ``(top, left, h, w)`` of each image and resize it to ``size`` (bilinear).

    Equals ``torchvision.transforms.functional.resized_crop(img, top, left, h, w,
    size, antialias=False)`` per image (to float rounding, ~1e-6), which is also
    what ``antialias=True`` gives whenever the crop is not larger than ``size``
    (e.g. CIFAR-10's 32 -> 32). One ``grid_sample`` call for the whole batch:
    the sampling positions of ``F.interpolate`` (``align_corners=False``) are
    clamped to the box, so pixels outside a box never leak in. ``flip`` (bool,
    (B,)) mirrors the chosen images horizontally for free by reversing their
    sampling grid.
    """
    check_images(x)
    out_h, out_w = (size, size) if isinstance(size, int) else size
    B, _, H, W = x.shape
    top, left, h, w = boxes.to(device=x.device, dtype=x.dtype).unbind(dim=1)

    def grid_coords(start: Tensor, length: Tensor, n_in: int, n_out: int) -> Tensor:
        k = torch.arange(0.5, n_out, device=x.device, dtype=x.dtype)   # pixel centres 0.5, 1.5, ...
        src = start[:, None] + k * (length / n_out)[:, None] - 0.5   # pixel index, like F.interpolate
        src = torch.maximum(torch.minimum(src, (start + length - 1)[:, None]), start[:, None])
        return (2 * src + 1) / n_in - 1                              # grid_sample's [-1, 1] coordinates

    gx = grid_coords(left, w, W, out_w)                              # (B, out_w)
    gy = grid_coords(top, h, H, out_h)                               # (B, out_h)
    if flip is not None:
        gx = torch.where(flip[:, None], gx.flip(1), gx)
    grid = torch.stack([gx[:, None, :].expand(B, out_h, out_w), gy[:, :, None].expand(B, out_h, out_w)], dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_resized_crop(x: Tensor, size: int, scale: Sequence[float] = (0.08, 1.0),
                        ratio: Sequence[float] = (3 / 4, 4 / 3),
                        generator: torch.Generator | None = None) -> Tensor:
    """Random crop + resize to (size, size), a different box per image (Appendix A, Fig. 4b).

    Boxes come from :func:`sample_crop_boxes` (torchvision's RandomResizedCrop
    distribution); resizing is :func:`resized_crop` (bilinear, no antialias).
    """
    check_images(x)
    boxes = sample_crop_boxes(x.shape[0], x.shape[2], x.shape[3], scale, ratio, generator, x.device)
    return resized_crop(x, boxes, size)


def horizontal_flip(x: Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """Mirror each image left-right with probability ``p`` (Appendix A: crop "with random flip")."""
    check_images(x)
    _check_p(p)
    flip = coin(p, x.shape[0], x.device, generator)
    return torch.where(per_image(flip), x.flip(-1), x)


# ----------------------------------------------------------------------------- colour

def rgb_to_gray(x: Tensor) -> Tensor:
    """Luma (B, 1, H, W) with torchvision's ``rgb_to_grayscale`` weights (0.2989, 0.587, 0.114)."""
    r, g, b = x.unbind(dim=1)
    return (r * LUMA[0]).add_(g, alpha=LUMA[1]).add_(b, alpha=LUMA[2]).unsqueeze(1)


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Per-image ``TF.adjust_hue``: rotate the HSV hue by ``shift`` (B,) in [-0.5, 0.5] turns.

    Same maths as torchvision (RGB -> HSV, ``h = (h + shift) mod 1``, HSV -> RGB),
    fused: a hue shift keeps each pixel's max and min channel (value and
    chroma), so only the hue angle ``h6`` (in sixths of a turn) is computed, and
    RGB is rebuilt with the closed form ``max - chroma * clamp(min(k, 4 - k), 0, 1)``,
    ``k = (n + h6) mod 6`` for n = 5, 3, 1.
    """
    return _hue_sixths(x, 6.0 * shift.view(-1, 1, 1))


def _hue_sixths(x: Tensor, shift6: Tensor, n: Tensor | None = None) -> Tensor:
    """:func:`adjust_hue` with the shift in sixths of a turn, (B, 1, 1): 16 kernels (``n``: 5, 3, 1).

    The hue in sixths is ``2 c + (x[c+1] - x[c+2]) / chroma`` for the channel c
    holding the max (the first one on ties: red, then green), i.e. (g - b)/chroma,
    2 + (b - r)/chroma or 4 + (r - g)/chroma; ``roll`` lines up the two channels.
    """
    maxc, c = x.max(dim=1)                                             # value and the channel holding it
    chroma = maxc - x.amin(dim=1)
    num = (x.roll(-1, dims=1) - x.roll(1, dims=1)).gather(1, c.unsqueeze(1)).squeeze(1)
    # chroma 0 means a gray pixel, num 0: any positive divisor gives hue offset + 0
    h6 = torch.addcdiv(torch.add(shift6, c, alpha=2), num, chroma.clamp_min(torch.finfo(x.dtype).tiny))
    if n is None:
        n = torch.arange(5, 0, -2, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    k = torch.remainder(h6.unsqueeze(1) + n, 6.0)
    return torch.addcmul(maxc.unsqueeze(1), chroma.unsqueeze(1), torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0),
                         value=-1.0)


def _jitter_range(name: str, value: float | Sequence[float], center: float,
                  bound: tuple[float, float]) -> tuple[float, float]:
    """torchvision's ``ColorJitter._check_input``: v -> [max(lo, center - v), center + v], or a (min, max) pair."""
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
        lo_hi = (max(bound[0], center - value), center + value)
    else:
        lo_hi = tuple(float(v) for v in value)
    if len(lo_hi) != 2 or not bound[0] <= lo_hi[0] <= lo_hi[1] <= bound[1]:
        raise ValueError(f"{name} must give a range (min, max) inside {bound}, got {value}")
    return lo_hi


def color_jitter(x: Tensor, brightness: float | Sequence[float] = 0.0, contrast: float | Sequence[float] = 0.0,
                 saturation: float | Sequence[float] = 0.0, hue: float | Sequence[float] = 0.0, p: float = 0.8,
                 generator: torch.Generator | None = None) -> Tensor:
    """torchvision's ``RandomApply([ColorJitter(b, c, s, h)], p)``, batched (Appendix A).

    With probability ``p`` per image: brightness factor ~ U[max(0, 1-b), 1+b],
    contrast ~ U[max(0, 1-c), 1+c], saturation ~ U[max(0, 1-s), 1+s] and hue
    shift ~ U[-h, h] (h <= 0.5), applied "in random order" (each image draws its
    own permutation of the four). As in torchvision, each argument may also be
    a (min, max) range. Batched: at each of the 4 steps every image is
    blended with its own target (black / mean gray / gray image, as
    ``augment_reference.adjust_brightness`` etc.; factor 1 = unchanged for images not jittered
    or doing hue at that step), then the hue shift is applied to the images
    whose step it is.
    """
    check_images(x)
    _check_p(p)
    inf = float("inf")
    ranges = [_jitter_range("brightness", brightness, 1.0, (0.0, inf)),
              _jitter_range("contrast", contrast, 1.0, (0.0, inf)),
              _jitter_range("saturation", saturation, 1.0, (0.0, inf)),
              _jitter_range("hue", hue, 0.0, (-0.5, 0.5))]
    draws = _draw_jitter(x.shape[0], ranges, p, x.device, generator)
    return _apply_jitter(x, *draws, hue=ranges[3] != (0.0, 0.0))


def _draw_jitter(batch: int, ranges: Sequence[tuple[float, float]], p: float, device: torch.device,
                 generator: torch.Generator | None) -> tuple[Tensor, ...]:
    """:func:`color_jitter`'s random draws: 4 factors (B,) each, which images (B,), a permutation (B, 4)."""
    factors = tuple(uniform(lo, hi, (batch,), device, generator) for lo, hi in ranges)
    jitter = coin(p, batch, device, generator)
    perm = torch.rand(batch, 4, device=device, generator=generator).argsort(dim=1)   # a permutation per image
    return (*factors, jitter, perm)


def _apply_jitter(x: Tensor, f_bright: Tensor, f_contrast: Tensor, f_sat: Tensor, shift: Tensor, jitter: Tensor,
                  perm: Tensor, hue: bool = True) -> Tensor:
    """The deterministic part of :func:`color_jitter`: step i, image b applies op perm[b, i] (b, c, s, h).

    Per step: one blend ``f x + (1 - f) target`` for the whole batch (target:
    black, the mean gray level or the gray image; ``f = 1`` is a no-op), then
    the hue rotation where it is the image's op (``hue=False``: no hue range).
    """
    f, w_mean, w_gray, is_hue, shift6 = _jitter_tables(f_bright, f_contrast, f_sat, shift, jitter, perm)
    n = torch.arange(5, 0, -2, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)   # for _hue_sixths
    for i in range(4):
        gray = rgb_to_gray(x)
        target = torch.addcmul(w_mean[i] * gray.mean(dim=(1, 2, 3), keepdim=True), w_gray[i], gray)
        x = torch.addcmul(target, f[i], x).clamp_(0.0, 1.0)      # a new tensor: the hue may go into it in place
        if hue:
            x = _apply_where(is_hue[i], lambda imgs, idx, i=i: _hue_sixths(
                imgs, shift6[i] if idx is None else shift6[i, idx], n), x, inplace=True)
    return x


def _jitter_tables(f_bright: Tensor, f_contrast: Tensor, f_sat: Tensor, shift: Tensor, jitter: Tensor,
                   perm: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Per-step, per-image factor tables of :func:`color_jitter`, built once per batch (about 15 small kernels).

    Row i of each table is step i: ``f`` the blend factor (1 where the image's op
    at that step is the hue or where it is not jittered), ``w_mean`` / ``w_gray``
    the weight ``1 - f`` of the mean gray level (contrast) / of the gray image
    (saturation), ``is_hue`` and ``shift6`` (the hue shift in sixths of a turn).
    Blend tables are (4, B, 1, 1, 1), so that row i broadcasts over a batch.
    """
    op = torch.where(jitter, perm.t(), -1)                                   # (4, B); -1: image left alone
    factors = torch.stack([f_bright, f_contrast, f_sat, torch.ones_like(f_bright)])   # (4 ops, B)
    f = torch.where(op >= 0, factors.gather(0, op.clamp(min=0)), 1.0)
    w_mean = torch.where(op == 1, 1.0 - f, 0.0)
    w_gray = torch.where(op == 2, 1.0 - f, 0.0)
    is_hue = op == 3
    shift6 = torch.where(is_hue, 6.0 * shift, 0.0)
    table = torch.stack([f, w_mean, w_gray]).view(3, 4, -1, 1, 1, 1)
    return table[0], table[1], table[2], is_hue, shift6.view(4, -1, 1, 1)


def _apply_where(mask: Tensor, fn: Callable[[Tensor, Tensor], Tensor], x: Tensor,
                 inplace: bool = False) -> Tensor:
    """``fn`` applied to the images where ``mask`` is true, others unchanged.

    On CPU only those images are computed (indexing is free there); on other
    devices ``fn`` runs on the whole batch and ``torch.where`` picks, because
    indexing by a mask would wait for the device (a host sync).
    ``fn(images, index)`` gets the chosen images and their batch indices
    (``None``: the whole batch). ``inplace``: on CPU write the results into
    ``x`` (for a tensor the caller owns).
    """
    if x.device.type == "cpu":
        idx = mask.nonzero().squeeze(1)
        return (x.index_copy_ if inplace else x.index_copy)(0, idx, fn(x[idx], idx))
    return torch.where(per_image(mask), fn(x, None), x)


def random_grayscale(x: Tensor, p: float = 0.2, generator: torch.Generator | None = None) -> Tensor:
    """torchvision's ``RandomGrayscale(p)``: with probability p an image becomes its luma, on 3 channels."""
    check_images(x)
    _check_p(p)
    return _random_grayscale(x, p, generator)


def _random_grayscale(x: Tensor, p: float, generator: torch.Generator | None, inplace: bool = False) -> Tensor:
    return _apply_gray(x, coin(p, x.shape[0], x.device, generator), inplace)


def _apply_gray(x: Tensor, gray: Tensor, inplace: bool = False) -> Tensor:
    """Images where ``gray`` (B,) is true become their luma on 3 channels."""
    return _apply_where(gray, lambda imgs, idx: rgb_to_gray(imgs).expand_as(imgs), x, inplace=inplace)


def color_distortion(x: Tensor, strength: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """Appendix A's colour distortion of strength s (Table 1 studies s from 1/8 to 1).

    ``RandomApply([ColorJitter(0.8s, 0.8s, 0.8s, 0.2s)], p=0.8)`` then
    ``RandomGrayscale(p=0.2)``. The paper uses s=1 on ImageNet and s=0.5 on
    CIFAR-10 (Appendix B.9). s must be in [0, 2.5] (hue 0.2s at most 0.5).
    """
    check_strength(strength)
    s = strength
    x = color_jitter(x, 0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s, p=0.8, generator=generator)
    return _random_grayscale(x, 0.2, generator, inplace=True)  # color_jitter's output is a new tensor


# ----------------------------------------------------------------------------- blur (Appendix A, ImageNet)

def blur_kernel_size(side: int, fraction: float = 0.1) -> int:
    """Gaussian kernel side: ``fraction`` of the image side, made odd, at least 3 (32 -> 3, 224 -> 23)."""
    return max(3, int(side * fraction) // 2 * 2 + 1)


def gaussian_blur(x: Tensor, sigma: Sequence[float] = (0.1, 2.0), p: float = 0.5, kernel_fraction: float = 0.1,
                  generator: torch.Generator | None = None) -> Tensor:
    """Appendix A's Gaussian blur: with probability p, sigma ~ U(sigma), kernel 10% of the side.

    Same kernel and reflect padding as ``torchvision.transforms.GaussianBlur``,
    done separably for the whole batch as two grouped convolutions with one
    1-D kernel per image. The kernel side comes from :func:`blur_kernel_size`
    of ``min(H, W)``.
    """
    check_images(x)
    _check_p(p)
    lo, hi = check_range("sigma", sigma, low=1e-6)
    sig = uniform(lo, hi, (x.shape[0],), x.device, generator)
    return _apply_blur(x, sig, coin(p, x.shape[0], x.device, generator), kernel_fraction)


def _apply_blur(x: Tensor, sig: Tensor, blur: Tensor, kernel_fraction: float = 0.1) -> Tensor:
    """The deterministic part of :func:`gaussian_blur`: blur image b with sigma ``sig[b]`` where ``blur[b]``."""
    B, C, H, W = x.shape
    k = blur_kernel_size(min(H, W), kernel_fraction)
    t = torch.linspace(-(k - 1) / 2, (k - 1) / 2, k, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (t / sig[:, None]) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(C, dim=0)   # (B*C, k)
    r = k // 2
    y = F.pad(x, (r, r, r, r), mode="reflect").reshape(1, B * C, H + 2 * r, W + 2 * r)
    y = F.conv2d(y, kernel[:, None, None, :], groups=B * C)   # along width
    y = F.conv2d(y, kernel[:, None, :, None], groups=B * C)   # along height
    return torch.where(per_image(blur), y.view(B, C, H, W), x)


# ----------------------------------------------------------------------------- the full pipeline

class SimCLRAugment(torch.nn.Module):
    """SimCLR's augmentation (Appendix A) for a whole batch on its own device; call twice for two views.

    crop (area 0.08-1, ratio 3/4-4/3) + flip -> colour distortion of strength s
    -> optional Gaussian blur (p=0.5, sigma 0.1-2, kernel 10% of ``size``).
    Same distribution as ``augment_reference.torchvision_pipeline`` per image,
    but batched tensor ops with no host synchronisation. A view is :meth:`draw`
    (every random number, from ``generator``) then :meth:`apply` (a pure
    function of the images and those tables); :meth:`concat` makes several
    views with one :meth:`apply` (half the kernel launches for two views).

    Example: two views of a batch of 4 uint8 images of 40 x 40 pixels, cropped and
    resized to 32 x 32; the same generator seed gives the same view again:

    >>> import torch
    >>> from simclr_lite.augment import SimCLRAugment
    >>> aug = SimCLRAugment(size=32, strength=0.5)
    >>> images = torch.randint(0, 256, (4, 3, 40, 40), dtype=torch.uint8,
    ...                        generator=torch.Generator().manual_seed(0))
    >>> g = torch.Generator().manual_seed(1)
    >>> view_1, view_2 = aug(images, generator=g), aug(images, generator=g)
    >>> view_1.shape, view_1.dtype            # float images in [0, 1]
    (torch.Size([4, 3, 32, 32]), torch.float32)
    >>> bool(view_1.min() >= 0) and bool(view_1.max() <= 1)
    True
    >>> torch.equal(view_1, view_2)           # two different random views
    False
    >>> torch.equal(aug(images, generator=torch.Generator().manual_seed(1)), view_1)
    True
    """

    def __init__(self, size: int, strength: float = 0.5, blur: bool = False,
                 scale: Sequence[float] = (0.08, 1.0), ratio: Sequence[float] = (3 / 4, 4 / 3)) -> None:
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        check_strength(strength)
        self.size, self.strength, self.blur = size, float(strength), bool(blur)
        self.scale = check_range("scale", scale, low=1e-12)
        self.ratio = check_range("ratio", ratio, low=1e-12)

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One random view of each image: uint8 or float (B, 3, H, W) -> float32 (B, 3, size, size)."""
        x = _to_float(images)
        return self.apply(x, self.draw(x.shape[0], x.shape[2], x.shape[3], generator, x.device))

    def concat(self, images: Sequence[Tensor], generators: Sequence[torch.Generator | None]) -> Tensor:
        """``torch.cat([self(x, generator=g) for x, g in zip(images, generators)])``, the same views.

        Each chunk's tables come from its own generator, then one :meth:`apply`
        runs on all the chunks at once (on a CPU one per chunk: faster there)."""
        if len(images) != len(generators) or not images:
            raise ValueError(f"concat needs one generator per image batch, got {len(images)} batches and "
                             f"{len(generators)} generators")
        for x in images:
            _check_batch(x)
        if len({x.shape[1:] for x in images}) != 1:
            raise ValueError(f"concat needs batches of one image shape, got {[tuple(x.shape) for x in images]}")
        if images[0].device.type == "cpu":
            return torch.cat([self(x, generator=g) for x, g in zip(images, generators)])
        return self._concat_joined(images, generators)

    def _concat_joined(self, images: Sequence[Tensor], generators: Sequence[torch.Generator | None]) -> Tensor:
        """:meth:`concat` with one :meth:`apply` for all the chunks (what a GPU runs)."""
        x = torch.cat([_to_float(x) for x in images])
        tables = [self.draw(c.shape[0], c.shape[2], c.shape[3], g, x.device) for c, g in zip(images, generators)]
        return self.apply(x, {k: torch.cat([t[k] for t in tables]) for k in tables[0]})

    def draw(self, batch: int, height: int, width: int, generator: torch.Generator | None = None,
             device: torch.device | str | None = None) -> dict[str, Tensor]:
        """Every random draw of one view, in a fixed order: one row per image of ``boxes``, ``flip``,
        ``bright``, ``contrast``, ``sat``, ``hue``, ``jitter``, ``perm``, ``gray`` (blur: ``sigma``, ``blur``)."""
        s, dev = self.strength, device
        if dev is None:
            dev = generator.device if generator is not None else torch.device("cpu")
        t = {"boxes": sample_crop_boxes(batch, height, width, self.scale, self.ratio, generator, dev),
             "flip": coin(0.5, batch, dev, generator)}
        ranges = [(max(0.0, 1.0 - 0.8 * s), 1.0 + 0.8 * s)] * 3 + [(-0.2 * s, 0.2 * s)]
        t.update(zip(("bright", "contrast", "sat", "hue", "jitter", "perm"),
                     _draw_jitter(batch, ranges, 0.8, dev, generator)))
        t["gray"] = coin(0.2, batch, dev, generator)
        if self.blur:
            t["sigma"] = uniform(0.1, 2.0, (batch,), dev, generator)
            t["blur"] = coin(0.5, batch, dev, generator)
        return t

    def apply(self, x: Tensor, t: dict[str, Tensor]) -> Tensor:
        """The view of float images ``x`` (B, 3, H, W) given :meth:`draw`'s tables: no randomness here."""
        x = resized_crop(x, t["boxes"], self.size, flip=t["flip"])
        x = _apply_jitter(x, t["bright"], t["contrast"], t["sat"], t["hue"], t["jitter"], t["perm"],
                          hue=self.strength > 0)
        x = _apply_gray(x, t["gray"], inplace=True)                # x is a new tensor here
        if self.blur:
            x = _apply_blur(x, t["sigma"], t["blur"])
        return x

    def extra_repr(self) -> str:
        return (f"size={self.size}, strength={self.strength}, blur={self.blur}, "
                f"scale={self.scale}, ratio=({self.ratio[0]:.4g}, {self.ratio[1]:.4g})")


def _check_batch(images: Tensor) -> None:
    """A one-line error unless ``images`` is a uint8 or float (B, 3, H, W) batch."""
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must have shape (B, 3, H, W), got {shape}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise ValueError(f"images must be uint8 or float in [0, 1], got dtype {images.dtype}")


def _to_float(images: Tensor) -> Tensor:
    """uint8 or float (B, 3, H, W) -> float32 in [0, 1]."""
    _check_batch(images)
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()
