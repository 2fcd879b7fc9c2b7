"""FROZEN copy of ``SimCLRAugment``'s code path as of commit 755e543 (before the fused colour steps).

Tests only: ``tests/test_augment.py`` checks that the package's faster
``SimCLRAugment`` makes the same views as this for the same generator.
Do not edit (argument checks removed; the maths is verbatim).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

LUMA = (0.2989, 0.587, 0.114)
CROP_TRIES = 10


def _uniform(low: float, high: float, shape: tuple[int, ...], device: torch.device,
             generator: torch.Generator | None) -> Tensor:
    """U(low, high) samples of ``shape`` on ``device``."""
    return low + (high - low) * torch.rand(shape, device=device, generator=generator)


def _coin(p: float, n: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
    """n independent Bernoulli(p) draws as a bool tensor."""
    return torch.rand(n, device=device, generator=generator) < p


def _per_image(v: Tensor) -> Tensor:
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
    s_lo, s_hi = scale
    r_lo, r_hi = ratio
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    shape = (batch, CROP_TRIES)
    area = height * width * _uniform(s_lo, s_hi, shape, device, generator)
    aspect = torch.exp(_uniform(math.log(r_lo), math.log(r_hi), shape, device, generator))
    w = torch.round(torch.sqrt(area * aspect))
    h = torch.round(torch.sqrt(area / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
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
    top = torch.minimum(torch.floor(u[:, 0] * (height - h + 1)), height - h)
    left = torch.minimum(torch.floor(u[:, 1] * (width - w + 1)), width - w)
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
    out_h, out_w = (size, size) if isinstance(size, int) else size
    B, _, H, W = x.shape
    top, left, h, w = boxes.to(device=x.device, dtype=x.dtype).unbind(dim=1)

    def grid_coords(start: Tensor, length: Tensor, n_in: int, n_out: int) -> Tensor:
        k = torch.arange(n_out, device=x.device, dtype=x.dtype) + 0.5
        src = start[:, None] + k * (length / n_out)[:, None] - 0.5   # pixel index, like F.interpolate
        src = torch.maximum(torch.minimum(src, (start + length - 1)[:, None]), start[:, None])
        return (2 * src + 1) / n_in - 1                              # grid_sample's [-1, 1] coordinates

    gx = grid_coords(left, w, W, out_w)                              # (B, out_w)
    gy = grid_coords(top, h, H, out_h)                               # (B, out_h)
    if flip is not None:
        gx = torch.where(flip[:, None], gx.flip(1), gx)
    grid = torch.stack([gx[:, None, :].expand(B, out_h, out_w), gy[:, :, None].expand(B, out_h, out_w)], dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def rgb_to_gray(x: Tensor) -> Tensor:
    """Luma (B, 1, H, W) with torchvision's ``rgb_to_grayscale`` weights (0.2989, 0.587, 0.114).
    """
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
    r, g, b = x.unbind(dim=1)
    maxc, minc = x.amax(dim=1), x.amin(dim=1)
    chroma = maxc - minc
    safe = torch.where(chroma == 0, 1.0, chroma)
    # hue (in sixths) for max = r, g, b: (g - b)/c, 2 + (b - r)/c, 4 + (r - g)/c; one division for all three
    is_r, is_g = maxc == r, maxc == g
    num = torch.where(is_r, g - b, torch.where(is_g, b - r, r - g))
    offset = torch.where(is_r, 0.0, torch.where(is_g, 2.0, 4.0)) + 6.0 * shift.view(-1, 1, 1)
    h6 = torch.addcdiv(offset, num, safe)                              # hue + shift, in sixths
    n = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    k = torch.remainder(n + h6.unsqueeze(1), 6.0)
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
    :func:`adjust_brightness` etc.; factor 1 = unchanged for images not jittered
    or doing hue at that step), then the hue shift is applied to the images
    whose step it is.
    """
    inf = float("inf")
    ranges = [_jitter_range("brightness", brightness, 1.0, (0.0, inf)),
              _jitter_range("contrast", contrast, 1.0, (0.0, inf)),
              _jitter_range("saturation", saturation, 1.0, (0.0, inf)),
              _jitter_range("hue", hue, 0.0, (-0.5, 0.5))]
    B, dev = x.shape[0], x.device
    f_bright, f_contrast, f_sat, shift = (_uniform(lo, hi, (B,), dev, generator) for lo, hi in ranges)
    jitter = _coin(p, B, dev, generator)
    order = torch.rand(B, 4, device=dev, generator=generator).argsort(dim=1)  # a random permutation per image
    order = torch.where(jitter[:, None], order, -1)                          # -1: leave the image alone

    for step in order.unbind(dim=1):          # step[i] = which op image i applies now (0 b, 1 c, 2 s, 3 h)
        # blend f x + (1 - f) target, target = black (b), mean gray (c) or gray image (s); f = 1: no-op
        f = torch.where(step == 0, f_bright, torch.where(step == 1, f_contrast,
                                                         torch.where(step == 2, f_sat, 1.0)))
        gray = rgb_to_gray(x)
        to_mean = torch.where(step == 1, (1.0 - f) * gray.mean(dim=(1, 2, 3)), 0.0)
        to_gray = torch.where(step == 2, 1.0 - f, 0.0)
        target = torch.addcmul(_per_image(to_mean), _per_image(to_gray), gray)   # (B, 1, H, W), two passes
        x = torch.addcmul(target, _per_image(f), x).clamp_(0.0, 1.0)             # instead of four
        if ranges[3] != (0.0, 0.0):  # x is a new tensor here: the hue may be written into it in place
            x = _apply_where(step == 3, lambda imgs, idx: adjust_hue(imgs, shift[idx]), x, inplace=True)
    return x


def _apply_where(mask: Tensor, fn: Callable[[Tensor, Tensor], Tensor], x: Tensor,
                 inplace: bool = False) -> Tensor:
    """``fn`` applied to the images where ``mask`` is true, others unchanged.

    On CPU only those images are computed (indexing is free there); on other
    devices ``fn`` runs on the whole batch and ``torch.where`` picks, because
    indexing by a mask would wait for the device (a host sync).
    ``fn(images, index)`` gets the chosen images and their batch indices.
    ``inplace``: on CPU write the results into ``x`` (for a tensor the caller owns).
    """
    if x.device.type == "cpu":
        idx = mask.nonzero().squeeze(1)
        return (x.index_copy_ if inplace else x.index_copy)(0, idx, fn(x[idx], idx))
    return torch.where(_per_image(mask), fn(x, torch.arange(x.shape[0], device=x.device)), x)


def _random_grayscale(x: Tensor, p: float, generator: torch.Generator | None, inplace: bool = False) -> Tensor:
    gray = _coin(p, x.shape[0], x.device, generator)
    return _apply_where(gray, lambda imgs, idx: rgb_to_gray(imgs).expand_as(imgs), x, inplace=inplace)


def color_distortion(x: Tensor, strength: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """Appendix A's colour distortion of strength s (Table 1 studies s from 1/8 to 1).

    ``RandomApply([ColorJitter(0.8s, 0.8s, 0.8s, 0.2s)], p=0.8)`` then
    ``RandomGrayscale(p=0.2)``. The paper uses s=1 on ImageNet and s=0.5 on
    CIFAR-10 (Appendix B.9). s must be in [0, 2.5] (hue 0.2s at most 0.5).
    """
    if not 0.0 <= strength <= 2.5:
        raise ValueError(f"strength must be in [0, 2.5] (hue = 0.2 * strength <= 0.5), got {strength}")
    s = strength
    x = color_jitter(x, 0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s, p=0.8, generator=generator)
    return _random_grayscale(x, 0.2, generator, inplace=True)  # color_jitter's output is a new tensor


def blur_kernel_size(side: int, fraction: float = 0.1) -> int:
    """Gaussian kernel side: ``fraction`` of the image side, made odd, at least 3 (32 -> 3, 224 -> 23).
    """
    return max(3, int(side * fraction) // 2 * 2 + 1)


def gaussian_blur(x: Tensor, sigma: Sequence[float] = (0.1, 2.0), p: float = 0.5, kernel_fraction: float = 0.1,
                  generator: torch.Generator | None = None) -> Tensor:
    """Appendix A's Gaussian blur: with probability p, sigma ~ U(sigma), kernel 10% of the side.

    Same kernel and reflect padding as ``torchvision.transforms.GaussianBlur``,
    done separably for the whole batch as two grouped convolutions with one
    1-D kernel per image. The kernel side comes from :func:`blur_kernel_size`
    of ``min(H, W)``.
    """
    lo, hi = sigma
    B, C, H, W = x.shape
    k = blur_kernel_size(min(H, W), kernel_fraction)
    sig = _uniform(lo, hi, (B,), x.device, generator)
    blur = _coin(p, B, x.device, generator)
    t = torch.linspace(-(k - 1) / 2, (k - 1) / 2, k, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (t / sig[:, None]) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(C, dim=0)   # (B*C, k)
    r = k // 2
    y = F.pad(x, (r, r, r, r), mode="reflect").reshape(1, B * C, H + 2 * r, W + 2 * r)
    y = F.conv2d(y, kernel[:, None, None, :], groups=B * C)   # along width
    y = F.conv2d(y, kernel[:, None, :, None], groups=B * C)   # along height
    return torch.where(_per_image(blur), y.view(B, C, H, W), x)


def simclr_augment_v1(images: Tensor, size: int, strength: float = 0.5, blur: bool = False,
                      scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), generator: torch.Generator | None = None) -> Tensor:
    """``SimCLRAugment(size, strength, blur, scale, ratio)(images, generator)`` as of commit 755e543."""
    x = images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()
    B, _, H, W = x.shape
    boxes = sample_crop_boxes(B, H, W, scale, ratio, generator, x.device)
    x = resized_crop(x, boxes, size, flip=_coin(0.5, B, x.device, generator))
    x = color_distortion(x, strength, generator)
    if blur:
        x = gaussian_blur(x, (0.1, 2.0), p=0.5, generator=generator)
    return x
