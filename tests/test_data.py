"""simclr_lite.data: CIFAR-10 in three formats, ImageFolder trees, caching, label subsets, bad input."""
from __future__ import annotations

import pickle
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from simclr_lite.data import (CIFAR10_CLASSES, data_root, label_subset, load_cifar10, load_dataset,
                              load_image_folder)
from simclr_lite.errors import DataError

from conftest import class_image, make_tree, mixed_mode_tree, real_cifar_root, write_image


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("SIMCLR_DATA", str(tmp_path / "env"))
    assert data_root(tmp_path / "arg") == tmp_path / "arg"
    assert data_root() == tmp_path / "env"
    monkeypatch.delenv("SIMCLR_DATA")
    assert data_root().name == "data"


def test_image_folder_shapes_and_labels(tiny_tree):
    x, y, classes = load_image_folder(tiny_tree / "train")
    assert x.dtype == torch.uint8 and x.shape == (72, 3, 16, 16)
    assert classes == ["class0", "class1", "class2"]
    assert torch.equal(torch.bincount(y), torch.tensor([24, 24, 24]))
    # the decoded pixels are the ones written (PNG is lossless)
    from PIL import Image
    ref = np.asarray(Image.open(tiny_tree / "train" / "class1" / "000.png"))
    assert np.array_equal(x[24].permute(1, 2, 0).numpy(), ref)


@pytest.mark.parametrize("mode,fmt,ext", [("L", "PNG", "png"), ("RGBA", "PNG", "png"), ("P", "PNG", "png"),
                                          ("CMYK", "JPEG", "jpg"), ("RGB", "JPEG", "jpeg"), ("I;16", "PNG", "png")])
def test_any_mode_becomes_rgb(tmp_path, mode, fmt, ext):
    write_image(tmp_path / "t" / "a" / f"x.{ext}", class_image(0, 0, 20), mode=mode, fmt=fmt)
    write_image(tmp_path / "t" / "a" / "y.png", class_image(0, 1, 20))
    x, y, _ = load_image_folder(tmp_path / "t")
    assert x.shape == (2, 3, 20, 20)


def test_mixed_sizes_need_a_size(tmp_path):
    write_image(tmp_path / "t" / "a" / "big.png", class_image(0, 0, 40))
    write_image(tmp_path / "t" / "b" / "small.png", class_image(1, 0, 12))
    with pytest.raises(DataError, match="--image-size"):
        load_image_folder(tmp_path / "t")
    x, _, _ = load_image_folder(tmp_path / "t", size=16)
    assert x.shape == (2, 3, 16, 16)


def test_tar_archive_and_cache(tmp_path):
    tree = make_tree(tmp_path / "src", per_class=6)
    archive = tmp_path / "train.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree / "train", arcname="train")
    x1, y1, c1 = load_image_folder(archive)
    t = time.perf_counter()
    x2, y2, c2 = load_image_folder(archive)
    assert time.perf_counter() - t < 1.0  # served from the cache
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and c1 == c2
    x3, _, _ = load_image_folder(tree / "train")
    assert torch.equal(x1, x3)


def _write_cifar_pickle(root: Path, n: int = 20) -> tuple[np.ndarray, list[int]]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
    labels = [i % 10 for i in range(n)]
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": data, "labels": labels}, fh)
    return data, labels


def test_cifar_torchvision_format(tmp_path):
    data, labels = _write_cifar_pickle(tmp_path)
    x, y = load_cifar10(tmp_path, train=True)
    assert x.shape == (100, 3, 32, 32) and x.dtype == torch.uint8
    assert np.array_equal(x[:20].reshape(20, -1).numpy(), data)
    xt, yt = load_cifar10(tmp_path, train=False)
    assert xt.shape == (20, 3, 32, 32) and yt.tolist() == labels


def test_cifar_image_folder_layout(tmp_path):
    for c, name in enumerate(CIFAR10_CLASSES[:3]):
        for i in range(2):
            write_image(tmp_path / "cifar10" / "test" / name / f"{i}.png", class_image(c, i, 32))
    x, y = load_cifar10(tmp_path, train=False)
    assert x.shape == (6, 3, 32, 32)
    assert y.tolist() == [0, 0, 1, 1, 2, 2]  # torchvision's class order, not alphabetical per split


def test_real_cifar_copy():
    root = real_cifar_root()
    if root is None:
        pytest.skip("the CIFAR-10 copy (../shared/datasets or $SIMCLR_DATA) is not here")
    x, y = load_cifar10(root, train=False)
    assert x.shape == (10000, 3, 32, 32) and x.dtype == torch.uint8
    assert torch.equal(torch.bincount(y), torch.full((10,), 1000))
    t = time.perf_counter()
    x2, _ = load_cifar10(root, train=False)
    assert time.perf_counter() - t < 1.0 and torch.equal(x, x2)
    assert 100 < x.float().mean() < 140  # natural images, not noise or zeros


def test_load_dataset_generic_tree(tiny_tree):
    xtr, ytr, classes = load_dataset(tiny_tree, True)
    xte, yte, _ = load_dataset(tiny_tree, False, classes=classes)
    assert xtr.shape[0] == 72 and xte.shape[0] == 24 and classes == ["class0", "class1", "class2"]


# ------------------------------------------------------------------ bad input
def test_missing_path(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "nope", True)
    with pytest.raises(DataError, match="does not exist"):
        load_cifar10(tmp_path / "nope")


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        load_image_folder(tmp_path / "empty")
    (tmp_path / "root" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="is empty"):
        load_dataset(tmp_path / "root", True)
    (tmp_path / "root" / "train" / "stray.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="no class folders"):
        load_dataset(tmp_path / "root", True)


THREE_WAYS = ("--data PATH", "SIMCLR_DATA", "--download true")


def test_no_split_folder(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match="no train/ folder") as e:
        load_dataset(tmp_path / "x", True)
    assert all(w in str(e.value) for w in THREE_WAYS) and "\n" not in str(e.value)
    with pytest.raises(DataError, match="does not exist") as e:
        load_dataset(tmp_path / "nope", True)
    assert all(w in str(e.value) for w in THREE_WAYS)


# ------------------------------------------------- --download (torchvision's download faked: no internet)
@pytest.fixture
def fake_download(monkeypatch):
    """torchvision's ``download_and_extract_archive``, replaced by one that extracts a tiny CIFAR-10
    (20 images per batch file) where the real one would; returns the list of its calls."""
    from torchvision.datasets import CIFAR10
    from torchvision.datasets import utils as tv_utils
    calls = []

    def fake(url, download_root, extract_root=None, filename=None, md5=None, remove_finished=False):
        calls.append(dict(url=url, root=Path(download_root), filename=filename, md5=md5))
        assert (url, filename, md5) == (CIFAR10.url, CIFAR10.filename, CIFAR10.tgz_md5)  # checked download
        _write_cifar_pickle(Path(extract_root or download_root))
    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake)
    return calls


def test_download_into_a_root_that_exists_without_data(tmp_path, fake_download):
    """A fresh clone's data/ holds only its README: --download true must still fetch CIFAR-10 there."""
    root = tmp_path / "data"
    root.mkdir()
    (root / "README.md").write_text("Datasets land here.")
    with pytest.raises(DataError, match="no train/ folder"):
        load_dataset(root, True)                       # without download: the one-line error, no fetch
    assert fake_download == []
    x, y, classes = load_dataset(root, True, download=True)
    assert len(fake_download) == 1 and fake_download[0]["root"] == root
    assert x.shape == (100, 3, 32, 32) and classes == list(CIFAR10_CLASSES) and y[:10].tolist() == list(range(10))
    xt, _, _ = load_dataset(root, False, size=16, download=True)   # found now: no second download
    assert xt.shape == (20, 3, 16, 16) and len(fake_download) == 1


def test_download_creates_a_missing_root_and_skips_an_existing_dataset(tmp_path, tiny_tree, fake_download):
    x, _ = load_cifar10(tmp_path / "new" / "cifar", train=False, download=True)
    assert x.shape == (20, 3, 32, 32) and len(fake_download) == 1
    x, _, classes = load_dataset(tiny_tree, True, download=True)   # a dataset is there: no download
    assert x.shape[0] == 72 and classes == ["class0", "class1", "class2"] and len(fake_download) == 1


def test_failed_download_is_one_line(tmp_path, monkeypatch):
    import urllib.error

    from torchvision.datasets import utils as tv_utils

    def offline(*a, **k):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    with pytest.raises(DataError, match="could not download CIFAR-10 .*URLError.*--data PATH") as e:
        load_dataset(tmp_path, True, download=True)
    assert "\n" not in str(e.value)


# ----------------------------------------------------------- progress bar while decoding
def test_progress_bar_while_decoding(tiny_tree, capsys):
    x, _, _ = load_image_folder(tiny_tree / "train", cache=False, progress=True)
    err = capsys.readouterr().err
    assert "decoding train" in err and "72/72" in err and x.shape[0] == 72
    y, _, _ = load_image_folder(tiny_tree / "train", cache=False)   # auto: stderr is not a terminal here
    assert capsys.readouterr().err == "" and torch.equal(x, y)
    load_image_folder(tiny_tree / "train", cache=False, progress=False)
    assert capsys.readouterr().err == ""


def test_progress_bar_on_a_terminal(tmp_path, monkeypatch, capsys):
    """progress=None shows the bar when stderr is a terminal, also for an archive (count, no total)."""
    import sys
    tree = make_tree(tmp_path / "src", per_class=4)
    archive = tmp_path / "train.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree / "train", arcname="train")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    x, _, _ = load_image_folder(archive, cache=False)
    err = capsys.readouterr().err
    assert "decoding train.tar.gz" in err and "12img" in err.replace(" ", "") and x.shape[0] == 12


@pytest.mark.parametrize("content", [b"", b"\xff\xd8\xff\xe0garbage", b"\x89PNG\r\n\x1a\n" + b"\x00" * 10])
def test_corrupt_image_names_the_file(tiny_tree, content):
    bad = tiny_tree / "train" / "class0" / "bad.png"
    bad.write_bytes(content)
    with pytest.raises(DataError, match="bad.png"):
        load_image_folder(tiny_tree / "train")
    x, _, _ = load_image_folder(tiny_tree / "train", skip_bad=True)
    assert x.shape[0] == 72


def test_truncated_image(tiny_tree):
    good = (tiny_tree / "train" / "class0" / "000.png").read_bytes()
    (tiny_tree / "train" / "class0" / "cut.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="cut.png"):
        load_image_folder(tiny_tree / "train")


def test_not_an_image(tiny_tree):
    (tiny_tree / "train" / "class0" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match="notes.txt is not an image"):
        load_image_folder(tiny_tree / "train")


def test_truncated_archive(tmp_path):
    tree = make_tree(tmp_path / "src", per_class=6)
    archive = tmp_path / "train.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree / "train", arcname="train")
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="corrupt or truncated"):
        load_image_folder(archive)


# ------------------------------------------------------------- label subsets
@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.5, 1.0])
def test_label_subset_is_class_balanced(fraction):
    labels = torch.arange(10).repeat_interleave(500)
    idx = label_subset(labels, fraction, seed=3)
    counts = torch.bincount(labels[idx], minlength=10)
    assert (counts == round(500 * fraction)).all()
    assert len(set(idx.tolist())) == len(idx)
    assert torch.equal(idx, label_subset(labels, fraction, seed=3))
    if fraction < 1:
        assert not torch.equal(idx, label_subset(labels, fraction, seed=4))


def test_label_subset_rejects_bad_fraction():
    with pytest.raises(ValueError, match="label fraction"):
        label_subset(torch.zeros(10, dtype=torch.long), 0.0)


# ------------------------------------------------------------ streaming loader (issue: ImageNet pipeline)
def _mixed_tree(root: Path) -> Path:
    return mixed_mode_tree(root, train_per_class=8, test_per_class=4)


def test_stream_dataset_decodes_mixed_modes_and_sizes(tmp_path):
    from simclr_lite.data import ImageFolderStream, stream_dataset
    root = _mixed_tree(tmp_path / "in")
    train = stream_dataset(root, True, size=24)
    test = stream_dataset(root, False, size=24, classes=train.classes)  # ImageNet's val/ stands for test/
    assert isinstance(train, ImageFolderStream) and test.folder.name == "val"
    assert len(train) == 16 and len(test) == 8 and train.classes == ["n00", "n01"]
    for i in range(len(train)):
        x, y = train[i]
        assert x.dtype == torch.uint8 and x.shape == (3, 24, 24) and y == int(train.labels[i])
    # the same pixels as the in-memory loader (same decode)
    xs, ys, _ = load_image_folder(root / "train", size=24, cache=False)
    assert torch.equal(torch.stack([train[i][0] for i in range(len(train))]), xs)
    assert torch.equal(train.labels, ys)


def test_stream_dataset_in_dataloader_workers(tmp_path):
    from simclr_lite.data import stream_dataset
    ds = stream_dataset(_mixed_tree(tmp_path / "in"), True, size=16)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=[[0, 5, 9], [15, 1, 2]], num_workers=2)
    batches = list(loader)
    assert [b[0].shape for b in batches] == [(3, 3, 16, 16)] * 2
    assert batches[1][1].tolist() == [int(ds.labels[i]) for i in (15, 1, 2)]


def test_stream_dataset_bad_image(tmp_path):
    from simclr_lite.data import stream_dataset
    root = _mixed_tree(tmp_path / "in")
    (root / "train" / "n01" / "2.png").write_bytes(b"\x89PNG not really")
    ds = stream_dataset(root, True, size=16)
    bad = ds.files.index(str(root / "train" / "n01" / "2.png"))
    with pytest.raises(DataError, match="cannot decode image .*2.png.*--skip-bad-images"):
        ds[bad]
    ds = stream_dataset(root, True, size=16, skip_bad=True)
    x, y = ds[bad]  # replaced by the next readable image, with that image's label
    assert x.shape == (3, 16, 16) and ds.skipped == 1 and y == int(ds.labels[bad + 1])


def test_stream_dataset_errors(tmp_path):
    from simclr_lite.data import stream_dataset
    with pytest.raises(DataError, match="does not exist"):
        stream_dataset(tmp_path / "nope", True, size=16)
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="no class folders"):
        stream_dataset(tmp_path / "empty", True, size=16)
    with pytest.raises(DataError, match="no test/ folder.*or val/"):
        stream_dataset(tmp_path / "empty", False, size=16)


def test_load_dataset_reads_val_as_test(tmp_path):
    root = _mixed_tree(tmp_path / "in")
    x, y, classes = load_dataset(root, False, size=16)
    assert x.shape == (8, 3, 16, 16) and classes == ["n00", "n01"]


# ---------------------------------------------------------------- issue 28
@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_grayscale_is_scaled_not_saturated(tmp_path, fmt):
    """A 0-65535 ramp decodes to 0-255 (mean 127.5), not to 255 everywhere (convert("RGB") clips)."""
    import io

    from PIL import Image

    from simclr_lite.data import decode_image
    ramp = np.tile(np.linspace(0, 65535, 64).round().astype(np.uint16), (64, 1))
    buf = io.BytesIO()
    Image.fromarray(ramp).save(buf, format=fmt)
    rgb = decode_image(buf.getvalue(), f"ramp.{fmt.lower()}")
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 0] == rgb[..., 2]).all() and rgb.min() == 0 and rgb.max() == 255
    assert abs(rgb.mean() - 127.5) < 0.5
    assert np.array_equal(rgb[0, :, 0], np.rint(ramp[0].astype(np.float64) * 255 / 65535).astype(np.uint8))


def test_cifar_batches_that_would_run_code_are_refused(tmp_path):
    """CIFAR-10's python batches are unpickled with an allow-list (numpy arrays, plain containers):
    a crafted batch names the global it wanted and runs nothing."""
    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(pickle.dumps({"data": Evil(), "labels": [0]}, protocol=2))
    with pytest.raises(DataError, match=r"test_batch was refused, unread: it refers to .*open") as info:
        load_cifar10(tmp_path, train=False)
    assert "\n" not in str(info.value) and not marker.exists()
