"""References for the batched augmentations of SimCLR (arXiv:2002.05709, Appendix A).

:func:`torchvision_pipeline` is Appendix A as per-image torchvision
transforms, what DataLoader workers run in the official / lightly-style code:
the tests check :class:`simclr_lite.augment.SimCLRAugment` against it (same
output distribution) and the benchmarks time it. The three blends of the
colour jitter, one op per call (``color_jitter`` fuses them), are checked
against torchvision's functional ops.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from torch import Tensor

from .augment import blur_kernel_size, check_strength, per_image, rgb_to_gray

__all__ = ["adjust_brightness", "adjust_contrast", "adjust_saturation", "torchvision_pipeline"]


def _blend(img: Tensor, other: Tensor | float, factor: Tensor) -> Tensor:
    """torchvision's ``_blend``: ``factor * img + (1 - factor) * other``, clamped to [0, 1]."""
    factor = per_image(factor)
    return (factor * img + (1.0 - factor) * other).clamp(0.0, 1.0)


def adjust_brightness(x: Tensor, factor: Tensor) -> Tensor:
    """Per-image ``TF.adjust_brightness``: scale by ``factor`` (B,) (blend with black)."""
    return _blend(x, 0.0, factor)


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    """Per-image ``TF.adjust_contrast``: blend with the image's mean gray level."""
    return _blend(x, rgb_to_gray(x).mean(dim=(1, 2, 3), keepdim=True), factor)


def adjust_saturation(x: Tensor, factor: Tensor) -> Tensor:
    """Per-image ``TF.adjust_saturation``: blend with the grayscale image."""
    return _blend(x, rgb_to_gray(x), factor)


class _ToFloat:
    """uint8 CHW tensor or PIL image -> float32 CHW in [0, 1] (ToTensor for tensors too)."""

    def __call__(self, img: Tensor | object) -> Tensor:
        if not isinstance(img, Tensor):
            img = TF.pil_to_tensor(img)
        return img.float() / 255.0 if img.dtype == torch.uint8 else img.float()

    def __repr__(self) -> str:
        return "ToFloat()"


def torchvision_pipeline(size: int, strength: float = 0.5, blur: bool = False,
                         scale: Sequence[float] = (0.08, 1.0),
                         ratio: Sequence[float] = (3 / 4, 4 / 3)) -> T.Compose:
    """The per-image reference: Appendix A's pseudo-code as torchvision transforms.

    This is what DataLoader workers run in the official / lightly-style SimCLR
    code. Input: a uint8 CHW tensor or PIL image; output: float32 CHW in [0, 1].
    The image is converted to float first, so every op works on floats (as
    :class:`SimCLRAugment` does). ``RandomResizedCrop`` keeps torchvision's
    default ``antialias=True`` (no difference from our batched crop when the
    crop is not larger than ``size``).
    """
    check_strength(strength)
    s = strength
    ops = [
        _ToFloat(),
        T.RandomResizedCrop(size, scale=tuple(scale), ratio=tuple(ratio), antialias=True),
        T.RandomHorizontalFlip(p=0.5),
        T.RandomApply([T.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=0.8),
        T.RandomGrayscale(p=0.2),
    ]
    if blur:
        ops.append(T.RandomApply([T.GaussianBlur(blur_kernel_size(size), sigma=(0.1, 2.0))], p=0.5))
    return T.Compose(ops)
