"""Fuzzing the data loaders: random bytes and mutated images never crash them.

Whatever a reader's folder or archive holds, :func:`decode_image` and
:func:`load_image_folder` either return decoded ``uint8`` images or raise
:class:`DataError` (which the CLI prints as one line). Any other exception
is a crash, and a bug. Hypothesis runs derandomized (the same examples every
run) with a modest budget, so CI stays fast and stable.
"""
from __future__ import annotations

import io
import os
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import class_image
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simclr_lite.data import decode_image, load_image_folder
from simclr_lite.errors import DataError

pytestmark = pytest.mark.filterwarnings("ignore")  # PIL warns about the corrupt files it is fed

# SIMCLR_FUZZ_EXAMPLES=2000 SIMCLR_FUZZ_RANDOM=1 fuzzes deeper (locally); CI runs the same 60 per test
FUZZ = settings(max_examples=int(os.environ.get("SIMCLR_FUZZ_EXAMPLES", "60")), deadline=None,
                derandomize=not os.environ.get("SIMCLR_FUZZ_RANDOM"), database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _encode(fmt: str, mode: str = "RGB", size: int = 12) -> bytes:
    from PIL import Image

    im = Image.fromarray(class_image(1, 2, size).astype(np.uint8), "RGB")
    if mode != "RGB":
        im = im.convert(mode)
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def _seeds() -> dict[str, bytes]:
    """Valid images of every format the loaders accept by extension: the fuzzer mutates these."""
    seeds = {}
    for ext, fmt, mode in [("png", "PNG", "RGB"), ("jpg", "JPEG", "RGB"), ("gif", "GIF", "P"), ("bmp", "BMP", "RGB"),
                           ("tif", "TIFF", "RGB"), ("webp", "WEBP", "RGB"), ("ppm", "PPM", "RGB"),
                           ("pgm", "PPM", "L")]:
        try:
            seeds[ext] = _encode(fmt, mode)
        except (KeyError, OSError):  # a Pillow built without this codec (WebP, say)
            pass
    return seeds


SEEDS = _seeds()
EXTS = [*SEEDS, "jpeg", "txt", "bin", ""]


@pytest.fixture(autouse=True)
def _small_pixel_limit(monkeypatch):
    """A mutated header can claim a 60000 x 60000 image: cap PIL's limit so the fuzzer stays small
    (above 2x the limit PIL raises DecompressionBombError, which must become a DataError too)."""
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)


@st.composite
def mutated(draw, data: bytes) -> bytes:
    """``data`` with 1-4 random edits: bit flips, overwrites, insertions, deletions, truncation."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "overwrite", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(0, len(buf) - 1)))
        if op == "flip" and buf:
            buf[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            buf[pos:pos + len(chunk)] = chunk
        elif op == "insert":
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del buf[pos:pos + draw(st.integers(1, 16))]
        else:
            del buf[pos:]
    return bytes(buf)


@st.composite
def image_file(draw) -> tuple[str, bytes]:
    """(file extension, bytes): a mutated valid image, random bytes, or an intact image."""
    kind = draw(st.sampled_from(["mutated", "mutated", "random", "intact"]))
    fmt = draw(st.sampled_from(sorted(SEEDS)))
    if kind == "random":
        return draw(st.sampled_from(EXTS)), draw(st.binary(max_size=300))
    data = SEEDS[fmt] if kind == "intact" else draw(mutated(SEEDS[fmt]))
    return draw(st.sampled_from([fmt, fmt, *EXTS])), data


def check_images(x, y, classes, size: int) -> None:
    assert x.dtype == torch.uint8 and y.dtype == torch.int64
    assert x.ndim == 4 and x.shape[1:] == (3, size, size) and x.shape[0] >= 1
    assert len(y) == len(x) and 0 <= int(y.min()) and int(y.max()) < len(classes)


@FUZZ
@given(file=image_file(), size=st.sampled_from([None, 8, 16]))
def test_decode_image_returns_rgb_or_data_error(file, size):
    ext, data = file
    try:
        arr = decode_image(data, f"fuzz.{ext}", size)
    except DataError as e:
        assert "fuzz." in str(e)  # the message names the file
        return
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
    if size is not None:
        assert arr.shape == (size, size, 3)


@FUZZ
@given(files=st.lists(image_file(), min_size=1, max_size=4), skip_bad=st.booleans())
def test_image_folder_loads_or_raises_data_error(files, skip_bad):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "train"
        good = root / "good" / "ok.png"
        good.parent.mkdir(parents=True)
        good.write_bytes(SEEDS["png"])
        for i, (ext, data) in enumerate(files):
            f = root / f"c{i % 2}" / f"f{i}.{ext}" if ext else root / f"c{i % 2}" / f"f{i}"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(data)
        try:
            x, y, classes = load_image_folder(root, size=16, skip_bad=skip_bad, cache=False)
        except DataError as e:
            assert not skip_bad or "no readable images" in str(e) or "is empty" in str(e), e
            return
        check_images(x, y, classes, 16)
        assert len(x) <= len(files) + 1


def _tar_bytes(members: list[tuple[str, bytes]], compression: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=f"w:{compression}") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


VALID_TAR = {c: _tar_bytes([(f"train/c{i % 2}/{i}.png", SEEDS["png"]) for i in range(4)], c)
             for c in ("", "gz")}


def _archive_loads_or_raises_data_error(archive_bytes: bytes, compression: str, skip_bad: bool) -> None:
    """Write the bytes as train.tar(.gz): loading gives valid images or a DataError naming the archive."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / ("train.tar.gz" if compression else "train.tar")
        archive.write_bytes(archive_bytes)
        try:
            x, y, classes = load_image_folder(archive, size=16, skip_bad=skip_bad, cache=False)
        except DataError as e:
            assert "train.tar" in str(e) or "no readable images" in str(e), e
            return
        check_images(x, y, classes, 16)


@FUZZ
@given(compression=st.sampled_from(["", "gz"]), data=st.data(), skip_bad=st.booleans())
def test_mutated_archive_loads_or_raises_data_error(compression, data, skip_bad):
    archive_bytes = data.draw(mutated(VALID_TAR[compression]))
    _archive_loads_or_raises_data_error(archive_bytes, compression, skip_bad)


@FUZZ
@given(files=st.lists(image_file(), min_size=1, max_size=4), compression=st.sampled_from(["", "gz"]),
       skip_bad=st.booleans())
def test_archive_of_fuzzed_images_loads_or_raises_data_error(files, compression, skip_bad):
    members = [(f"train/c{i % 2}/f{i}.{ext}", body) for i, (ext, body) in enumerate(files)]
    _archive_loads_or_raises_data_error(_tar_bytes(members, compression), compression, skip_bad)


@FUZZ
@given(blob=st.binary(max_size=2000), name=st.sampled_from(["train.tar.gz", "train.tar", "train"]))
def test_random_bytes_as_archive_raise_data_error(blob, name):
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / name
        p.write_bytes(blob)
        with pytest.raises(DataError, match=name):
            load_image_folder(p, size=16, cache=False)
