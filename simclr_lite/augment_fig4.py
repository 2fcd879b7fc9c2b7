"""The other transformations of Fig. 4 and the seven operators of Fig. 5 (SimCLR, arXiv:2002.05709).

Fig. 4 shows ten transformations; Appendix A's recipe (crop, flip, colour
distortion, blur) lives in :mod:`simclr_lite.augment`. Here are the rest,
batched the same way (per-image random parameters on ``x``'s device, no host
sync): colour drop, rotation, cutout, Gaussian noise and Sobel filtering, and
:data:`OPERATORS`, the seven transformations that Fig. 5 composes in pairs.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .augment import (check_images, check_range, coin, per_image, uniform, color_distortion, gaussian_blur,
                      resized_crop, rgb_to_gray, sample_crop_boxes)

__all__ = ["color_drop", "rotate", "cutout", "gaussian_noise", "sobel", "OPERATORS"]


def color_drop(x: Tensor) -> Tensor:
    """Fig. 4(e) "color drop": every image becomes grayscale (3 equal channels)."""
    check_images(x)
    return rgb_to_gray(x).expand_as(x).contiguous()


def rotate(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Fig. 4(g): rotate each square image by a random one of {90, 180, 270} degrees.

    Counter-clockwise, i.e. ``TF.rotate(img, 90 * k)`` = ``torch.rot90(img, k, dims=(-2, -1))``.
    """
    check_images(x)
    if x.shape[2] != x.shape[3]:
        raise ValueError(f"rotate needs square images, got shape {tuple(x.shape)}")
    k = per_image(torch.randint(1, 4, (x.shape[0],), device=x.device, generator=generator))
    r1, r2, r3 = (torch.rot90(x, i, dims=(2, 3)) for i in (1, 2, 3))
    return torch.where(k == 1, r1, torch.where(k == 2, r2, r3))


def cutout(x: Tensor, size_fraction: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """Fig. 4(f) cutout (DeVries & Taylor, 2017): zero one random square per image.

    Our choice: the square's side is uniform in {1, ..., round(size_fraction * min(H, W))}
    pixels (so "up to half the image" by default) and it lies fully inside the
    image, at a uniformly random position.
    """
    check_images(x)
    if not 0.0 < size_fraction <= 1.0:
        raise ValueError(f"size_fraction must be in (0, 1], got {size_fraction}")
    B, _, H, W = x.shape
    max_side = max(1, round(size_fraction * min(H, W)))
    u = torch.rand(B, 3, device=x.device, generator=generator)
    side = (torch.floor(u[:, 0] * max_side) + 1).clamp(max=max_side)
    top = torch.minimum(torch.floor(u[:, 1] * (H - side + 1)), H - side)
    left = torch.minimum(torch.floor(u[:, 2] * (W - side + 1)), W - side)
    rows = torch.arange(H, device=x.device, dtype=side.dtype)
    cols = torch.arange(W, device=x.device, dtype=side.dtype)
    in_rows = (rows >= top[:, None]) & (rows < (top + side)[:, None])     # (B, H)
    in_cols = (cols >= left[:, None]) & (cols < (left + side)[:, None])   # (B, W)
    hole = (in_rows[:, :, None] & in_cols[:, None, :]).unsqueeze(1)       # (B, 1, H, W)
    return x.masked_fill(hole, 0.0)


def gaussian_noise(x: Tensor, std: Sequence[float] = (0.0, 0.1), generator: torch.Generator | None = None) -> Tensor:
    """Fig. 4(h): add N(0, sigma^2) pixel noise, sigma ~ U(std) per image, then clamp to [0, 1].

    Our choice of the default std range (0, 0.1) on the [0, 1] scale: visible but
    not destructive noise.
    """
    check_images(x)
    lo, hi = check_range("std", std)
    sigma = uniform(lo, hi, (x.shape[0],), x.device, generator)
    noise = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
    return (x + per_image(sigma) * noise).clamp(0.0, 1.0)


def sobel(x: Tensor) -> Tensor:
    """Fig. 4(j) Sobel filtering: gradient magnitude of the luma, divided by its per-image max.

    Replicate padding keeps the size; a flat image gives zeros. Output on 3 channels.
    """
    check_images(x)
    gray = F.pad(rgb_to_gray(x), (1, 1, 1, 1), mode="replicate")
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=x.device, dtype=x.dtype)
    grad = F.conv2d(gray, torch.stack([kx, kx.t()]).unsqueeze(1))   # (B, 2, H, W): d/dx, d/dy
    mag = grad.pow(2).sum(dim=1, keepdim=True).sqrt()
    mag = mag / mag.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
    return mag.expand_as(x).contiguous()


def _crop_op(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Fig. 5 "crop": random resized crop back to the input size, plus random flip."""
    check_images(x)
    B, _, H, W = x.shape
    boxes = sample_crop_boxes(B, H, W, generator=generator, device=x.device)
    return resized_crop(x, boxes, (H, W), flip=coin(0.5, B, x.device, generator))


def _cutout_op(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    return cutout(x, generator=generator)


def _color_op(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    return color_distortion(x, strength=1.0, generator=generator)


def _sobel_op(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    return sobel(x)


def _noise_op(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    return gaussian_noise(x, generator=generator)


def _blur_op(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    return gaussian_blur(x, generator=generator)


def _rotate_op(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    return rotate(x, generator=generator)


#: The 7 transformations of Fig. 5, each ``f(x, generator=None)`` keeping the image size.
#: Each is its Appendix A / Fig. 4 definition with default parameters: "color" is colour
#: distortion of strength 1 (the ImageNet default, jitter p=0.8 + grayscale p=0.2) and
#: "blur" keeps its p=0.5; "crop" includes the random flip.
#: Chapter 3 of the book reproduces Fig. 5 with them.
OPERATORS: dict[str, Callable[[Tensor, torch.Generator | None], Tensor]] = {
    "crop": _crop_op,
    "cutout": _cutout_op,
    "color": _color_op,
    "sobel": _sobel_op,
    "noise": _noise_op,
    "blur": _blur_op,
    "rotate": _rotate_op,
}
