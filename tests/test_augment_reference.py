"""Tests for simclr_lite.augment_reference: the per-image reference pipeline."""
from __future__ import annotations

import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from simclr_lite import augment_reference as R
from test_augment import DEVICES, changed, gen, rand_images, smooth_images  # noqa: F401 (shared helpers)


def test_torchvision_pipeline_inputs_and_blur():
    img = smooth_images(1)[0]
    pipe = R.torchvision_pipeline(24, blur=True)
    for inp in (img, Image.fromarray(img.permute(1, 2, 0).numpy())):
        out = pipe(inp)
        assert out.shape == (3, 24, 24) and out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1
    blurs = [t for ra in pipe.transforms if isinstance(ra, T.RandomApply) for t in ra.transforms
             if isinstance(t, T.GaussianBlur)]
    assert len(blurs) == 1 and blurs[0].kernel_size == (3, 3) and blurs[0].sigma == (0.1, 2.0)
    assert not any(isinstance(t, T.RandomApply) and isinstance(t.transforms[0], T.GaussianBlur)
                   for t in R.torchvision_pipeline(24).transforms)


def test_bad_strength_raises_value_error_naming_it():
    with pytest.raises(ValueError, match=r"-2\.0"):
        R.torchvision_pipeline(32, strength=-2.0)
