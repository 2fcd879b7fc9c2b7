"""Datasets as decoded uint8 tensors: CIFAR-10 and any ImageFolder tree.

SimCLR's augmentations (Appendix A) are applied to whole batches on the
training device (see :mod:`simclr_lite.augment`), so the data layer only has
to hand over decoded images once. Everything here returns ``uint8`` tensors
of shape ``(N, 3, H, W)`` plus ``int64`` labels, and caches the decoded
arrays so that the second load of CIFAR-10 takes well under a second.

Where the data comes from, in order: the ``root`` argument, else the
``SIMCLR_DATA`` environment variable, else ``data/`` in the repository.
With ``download=True``, CIFAR-10 is fetched there by torchvision whenever no
dataset is found at that root (``data/`` of a fresh clone holds only a README).
A CIFAR-10 root may hold torchvision's ``cifar-10-batches-py`` folder, an
ImageFolder tree ``train/<class>/*.jpg`` + ``test/<class>/*.jpg`` (also
under ``cifar10/``), or the ``train.tar.gz`` / ``test.tar.gz`` archives of
that tree.

Book: chapter 1 (``book/01_simclr_in_one_picture.ipynb``) loads the data;
chapter 6 uses :func:`label_subset` for Table 7's 1% / 10% label fractions.
"""
from __future__ import annotations

import hashlib
import io
import lzma
import os
import pickle
import sys
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from .checkpoint import atomic_write
from .errors import ConfigError, DataError, SimCLRError

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
PACKAGE_ROOT = Path(__file__).resolve().parent
DEFAULT_ROOT = PACKAGE_ROOT.parent / "data"
# The three ways to get data, named by every "no data" error (the CLI's flags; SIMCLR_DATA for the book).
HOW_TO_GET_DATA = "pass --data PATH, set SIMCLR_DATA=PATH, or add --download true to fetch CIFAR-10"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root`` if given, else ``$SIMCLR_DATA``, else ``data/``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("SIMCLR_DATA")
    return Path(env).expanduser() if env else DEFAULT_ROOT


def cache_dir() -> Path:
    """Where decoded arrays are cached: ``$SIMCLR_CACHE``, else ``data/cache`` in the
    repository, else ``~/.cache/simclr_lite`` when the repository is read-only."""
    env = os.environ.get("SIMCLR_CACHE")
    candidates = [Path(env)] if env else [DEFAULT_ROOT / "cache", Path.home() / ".cache" / "simclr_lite"]
    for c in candidates:
        try:
            c.mkdir(parents=True, exist_ok=True)
            if os.access(c, os.W_OK):
                return c
        except OSError:
            continue
    return Path(tempfile.gettempdir())


def fingerprint(tensors: Iterable[torch.Tensor]) -> str:
    """SHA-256 of the tensors' shapes, dtypes and bytes: what a dataset *is*, wherever it is stored.

    A resumed run (:mod:`simclr_lite.run`) and the book's run cache compare it,
    so another copy of the same images is accepted and other images are not.
    """
    h = hashlib.sha256()
    for t in tensors:
        a = np.ascontiguousarray(t.detach().cpu().numpy())
        h.update(f"{tuple(a.shape)}{a.dtype}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


# ---------------------------------------------------------------- decoding
_HIGH_DEPTH = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")   # PIL modes of 16-bit, 32-bit and float pixels


def _to_8bit(a: np.ndarray, mode: str) -> np.ndarray:
    """A high-depth grayscale image in 8 bits: 16-bit (and PIL's 32-bit ``I``, which PNG's 16-bit
    files become) scaled by 255/65535, float in [0, 1] scaled by 255, rounded."""
    scale = 255.0 if mode == "F" else 255.0 / 65535.0
    return np.clip(np.rint(a.astype(np.float64) * scale), 0, 255).astype(np.uint8)


def decode_image(data: bytes, name: str, size: int | None = None) -> np.ndarray:
    """Decode one image file's bytes to an RGB uint8 array (H, W, 3).

    Grayscale, palette, RGBA and CMYK images become RGB (alpha is composited on
    black by dropping it); 16-bit grayscale is scaled to 8 bits, not clipped. With ``size``, the image is resized (bilinear, shorter
    side to ``size``, then centre-cropped) to ``size x size``.
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise DataError(f"image {name} is empty (0 bytes); remove or replace the file (or pass --skip-bad-images)")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.mode in _HIGH_DEPTH:  # 16-bit grayscale (PNG, TIFF): convert("RGB") would saturate it
                im = Image.fromarray(_to_8bit(np.asarray(im), im.mode))
            if im.mode != "RGB":
                im = im.convert("RGB")
            if size is not None and im.size != (size, size):
                w, h = im.size
                scale = size / min(w, h)
                nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
                im = im.resize((nw, nh), Image.BILINEAR)
                left, top = (nw - size) // 2, (nh - size) // 2
                im = im.crop((left, top, left + size, top + size))
            arr = np.asarray(im, dtype=np.uint8)
    except UnidentifiedImageError:
        raise DataError(f"cannot decode image {name}: not a recognised image format; "
                        f"remove or replace the file (or pass --skip-bad-images)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot decode image {name}: {type(e).__name__}: {e}; "
                        f"remove or replace the file (or pass --skip-bad-images)") from None
    if arr.ndim != 3 or arr.shape[2] != 3:  # pragma: no cover - PIL convert guarantees RGB
        raise DataError(f"image {name} decoded to shape {arr.shape}, expected (H, W, 3)")
    return arr


def _list_folder(folder: Path) -> list[tuple[str, Path]]:
    """(class, path) for every file of an ImageFolder tree, classes and files in sorted order."""
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"no class folders in {folder}; expected {folder}/<class>/<image> (ImageFolder layout)")
    return [(c, f) for c in classes for f in sorted((folder / c).rglob("*"))
            if f.is_file() and not f.name.startswith(".")]


def _walk_folder(folder: Path) -> tuple[Iterator[tuple[str, str, bytes]], int]:
    """(class, name, bytes) for every file of an ImageFolder tree, read lazily, and the number of files."""
    files = _list_folder(folder)
    return ((c, str(f), f.read_bytes()) for c, f in files), len(files)


def _decode_file(data: bytes, name: str, size: int | None) -> np.ndarray:
    """:func:`decode_image`, after refusing a file that is neither named nor shaped like an image."""
    if not name.lower().endswith(IMAGE_EXTENSIONS) and not _looks_like_image(data):
        raise DataError(f"{name} is not an image file; move it out of the dataset folder "
                        f"(or pass --skip-bad-images)")
    return decode_image(data, name, size)


def _walk_tar(archive: Path, split: str) -> Iterator[tuple[str, str, bytes]]:
    """Yield (class, name, bytes) for ``<split>/<class>/<file>`` members of a tar archive."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            for m in tar:
                if not m.isfile():
                    continue
                parts = Path(m.name).parts
                if parts and parts[0] == ".":
                    parts = parts[1:]
                if len(parts) < 3 or parts[0] != split or parts[-1].startswith("."):
                    continue
                fh = tar.extractfile(m)
                assert fh is not None
                yield parts[1], f"{archive}:{m.name}", fh.read()
    except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error, lzma.LZMAError) as e:
        raise DataError(f"archive {archive} is corrupt or truncated ({type(e).__name__}: {e}); "
                        f"download or copy it again") from None


def decode_items(items: Iterable[tuple[str, str, bytes]], size: int | None = None,
                 skip_bad: bool = False, classes: list[str] | None = None, source: str | None = None,
                 progress: bool | None = None, total: int | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor, list[str], int]:
    """Decode (class, name, bytes) triples into ``(images, labels, classes, skipped)``.

    Non-image files and corrupt images raise :class:`DataError` unless
    ``skip_bad``, in which case they are counted in ``skipped``. Images of
    different sizes need ``size`` (they are resized to ``size x size``).
    A tqdm bar (of ``total`` files, if known) shows on stderr with ``progress=True``, or with ``None`` when
    stderr is a terminal (not in notebooks or logs): CIFAR-10's first decode takes seconds, later loads none.
    """
    arrays: list[np.ndarray] = []
    names: list[str] = []
    skipped, shape = 0, None
    if progress or (progress is None and sys.stderr is not None and sys.stderr.isatty()):
        from tqdm.auto import tqdm
        items = tqdm(items, total=total, desc=f"decoding {Path(source or 'images').name}", unit="img",
                     file=sys.stderr, dynamic_ncols=True)
    for cls, name, data in items:
        try:
            arr = _decode_file(data, name, size)
        except DataError:
            if skip_bad:
                skipped += 1
                continue
            raise
        if shape is None:
            shape = arr.shape
        elif arr.shape != shape:
            raise DataError(f"{name} is {arr.shape[1]}x{arr.shape[0]} but earlier images are "
                            f"{shape[1]}x{shape[0]}; pass an image size (--image-size) to resize them")
        arrays.append(arr)
        names.append(cls)
    if not arrays:
        raise DataError(f"{source or 'the dataset'} holds no readable images"
                        f"{f' ({skipped} unreadable files skipped)' if skipped else ''}; check the path "
                        "(expected <root>/<class>/<image> files)")
    found = sorted(set(names))
    classes = list(classes) if classes is not None else found
    unknown = set(found) - set(classes)
    if unknown:
        raise DataError(f"classes {sorted(unknown)} are not in the training classes {classes}")
    index = {c: i for i, c in enumerate(classes)}
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor([index[c] for c in names], dtype=torch.int64)
    return images, labels, classes, skipped


def _looks_like_image(data: bytes) -> bool:
    magic = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"RIFF", b"II*\x00", b"MM\x00*", b"P5", b"P6")
    return data.startswith(magic)


# ------------------------------------------------------------------ caching
def _cached(source: Path, extra: str, build) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    st = source.stat()  # the key: path, size and mtime of the source, and what was decoded from it
    key = hashlib.sha1(f"{source.resolve()}|{st.st_size}|{st.st_mtime_ns}|{extra}".encode()).hexdigest()[:16]
    path = cache_dir() / f"{source.name.replace('.', '_')}-{extra.replace('/', '_')}-{key}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                return torch.from_numpy(z["images"]), torch.from_numpy(z["labels"]), [str(c) for c in z["classes"]]
        except (OSError, ValueError, KeyError, EOFError):
            path.unlink(missing_ok=True)  # a broken cache is rebuilt, never trusted
    images, labels, classes = build()
    try:
        atomic_write(path, lambda fh: np.savez(fh, images=images.numpy(), labels=labels.numpy(),
                                               classes=np.array(classes)), "")
    except SimCLRError:
        pass  # caching is an optimisation: a full disk must not fail the load (nothing half-written stays)
    return images, labels, classes


# ------------------------------------------------------------------ CIFAR-10
def _find_cifar_source(root: Path, split: str) -> tuple[str, Path] | None:
    for base in (root, root / "cifar10", root / "CIFAR10", root / "cifar-10"):
        if (base / "cifar-10-batches-py").is_dir():
            return "pickle", base / "cifar-10-batches-py"
        if (base / split).is_dir():
            return "folder", base / split
        if (base / f"{split}.tar.gz").is_file():
            return "tar", base / f"{split}.tar.gz"
    return None


def download_cifar10(root: str | os.PathLike) -> Path:
    """Fetch CIFAR-10 into ``root/cifar-10-batches-py`` (torchvision downloads the archive, checks its MD5,
    extracts it; the archive is then deleted) and return that folder; failing, a one-line :class:`DataError`."""
    from torchvision.datasets import CIFAR10
    from torchvision.datasets import utils as tv_utils

    root = Path(root).expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
        print(f"downloading CIFAR-10 from {CIFAR10.url} to {root}", file=sys.stderr)
        tv_utils.download_and_extract_archive(CIFAR10.url, str(root), filename=CIFAR10.filename,
                                              md5=CIFAR10.tgz_md5, remove_finished=True)
    except (OSError, RuntimeError, tarfile.TarError, EOFError) as e:  # URLError is an OSError
        raise DataError(f"could not download CIFAR-10 to {root} ({type(e).__name__}: {str(e)[:160]}); "
                        f"check the internet connection, or pass --data PATH to a copy") from None
    return root / CIFAR10.base_folder


def load_cifar10(root: str | os.PathLike | None = None, train: bool = True, download: bool = False,
                 progress: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 as ``(images uint8 (N, 3, 32, 32), labels int64 (N,))``.

    Reads torchvision's format, an ImageFolder tree or its ``.tar.gz`` archive
    under the data root (see :func:`data_root`), downloading with torchvision
    (:func:`download_cifar10`) when ``download`` is true and nothing is found.
    Decoded arrays are cached (see :func:`cache_dir`). ``progress``: see
    :func:`decode_items`. Book: chapter 1.
    """
    root_path = data_root(root)
    split = "train" if train else "test"
    if not root_path.exists() and not download:
        raise DataError(f"data path {root_path} does not exist; {HOW_TO_GET_DATA}")
    found = _find_cifar_source(root_path, split) if root_path.exists() else None
    if found is None and download:
        download_cifar10(root_path)
        found = _find_cifar_source(root_path, split)
    if found is None:
        raise DataError(f"no CIFAR-10 {split} split under {root_path} (expected cifar-10-batches-py/, "
                        f"{split}/<class>/*.jpg or {split}.tar.gz); {HOW_TO_GET_DATA}")
    kind, source = found
    if kind == "pickle":
        return _load_cifar_pickle(source, train)

    def build() -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        items, total = (_walk_tar(source, split), None) if kind == "tar" else _walk_folder(source)
        return decode_items(items, 32, classes=list(CIFAR10_CLASSES), source=str(source), progress=progress,
                            total=total)[:3]

    images, labels, _ = _cached(source, f"{split}-32", build)
    return images, labels


class _Refused(pickle.UnpicklingError):
    """A pickle that names a global a CIFAR-10 batch never holds."""


class _BatchUnpickler(pickle.Unpickler):
    """Reads CIFAR-10's python batches and nothing else: plain containers and numpy arrays. Any other
    global (a function, a class: what a crafted file would call) is refused, so a batch file can
    never run code."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("numpy.core.numeric", "_frombuffer"),
               ("numpy._core.numeric", "_frombuffer"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise _Refused(f"it refers to {module}.{name}, which a CIFAR-10 batch never does")
        return super().find_class(module, name)


def _load_cifar_pickle(folder: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    files = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    xs, ys = [], []
    for f in files:
        try:
            with open(folder / f, "rb") as fh:
                d = _BatchUnpickler(fh, encoding="latin1").load()
        except _Refused as e:
            raise DataError(f"CIFAR-10 batch {folder / f} was refused, unread: {e} (a crafted file could run "
                            f"code); use CIFAR-10 from its official source") from None
        except (OSError, pickle.UnpicklingError, EOFError, ValueError, KeyError) as e:
            raise DataError(f"CIFAR-10 batch {folder / f} is missing or corrupt ({e}); delete {folder} "
                            f"and download again") from None
        xs.append(np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(d["labels"], dtype=np.int64))
    return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))


# --------------------------------------------------------------- ImageFolder
def load_image_folder(path: str | os.PathLike, size: int | None = None, skip_bad: bool = False,
                      classes: list[str] | None = None, cache: bool = True, progress: bool | None = None,
                      ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Any ImageFolder tree (``<path>/<class>/<image>``) or ``.tar(.gz)`` of one.

    Images of any mode become RGB; with ``size`` they are resized and
    centre-cropped to ``size x size`` (required when sizes differ). Returns
    ``(images uint8 (N, 3, H, W), labels int64 (N,), classes)``. ``progress``:
    see :func:`decode_items`.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"data path {p} does not exist; pass --data PATH to an ImageFolder tree")
    if p.is_dir():
        if not any(p.iterdir()):
            raise DataError(f"data folder {p} is empty; put images in {p}/<class>/<image>")
        walk = lambda: _walk_folder(p)  # noqa: E731
    elif _is_tarfile(p):
        split = p.name.split(".")[0]
        walk = lambda: (_walk_tar(p, split), None)  # noqa: E731
    elif p.name.lower().endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        raise DataError(f"archive {p} is corrupt, truncated or not a tar archive; download or copy it again")
    else:
        raise DataError(f"{p} is neither a folder nor a tar archive; pass an ImageFolder tree")

    def build() -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        items, total = walk()
        images, labels, cls, skipped = decode_items(items, size, skip_bad=skip_bad, classes=classes,
                                                    source=str(p), progress=progress, total=total)
        if skipped:
            print(f"skipped {skipped} unreadable files in {p}")
        return images, labels, cls

    if cache and p.is_file():
        return _cached(p, f"{size}", build)
    return build()


def _is_tarfile(p: Path) -> bool:
    """``tarfile.is_tarfile``, but a damaged compressed stream (EOFError, zlib.error...) means no."""
    try:
        return tarfile.is_tarfile(p)
    except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error, lzma.LZMAError):
        return False


def _split_source(root: Path, split: str) -> Path | None:
    """The ImageFolder tree or archive of ``split`` under ``root`` (``test`` may be ImageNet's ``val``)."""
    for name in _split_names(split):
        for cand in (root / name, root / f"{name}.tar.gz", root / f"{name}.tar"):
            if cand.exists():
                return cand
    return None


def load_dataset(path: str | os.PathLike | None, train: bool, size: int | None = None,
                 download: bool = False, skip_bad: bool = False, classes: list[str] | None = None,
                 progress: bool | None = None) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The CLI's loader: a CIFAR-10 root, or any tree with ``train/`` and ``test/`` (or ``val/``). With
    ``download``, CIFAR-10 is fetched into a root that holds neither, such as a fresh clone's ``data/``."""
    root = data_root(path)
    split = "train" if train else "test"
    if download and not (root.is_dir() and any(_find_cifar_source(root, s) or _split_source(root, s)
                                               for s in ("train", "test"))):
        download_cifar10(root)
    if root.exists() and _is_cifar(root, split):
        x, y = load_cifar10(root, train=train, progress=progress)
        if size is not None and size != 32:
            x = torch.nn.functional.interpolate(x.float(), size=(size, size), mode="bilinear",
                                                antialias=True).round().clamp(0, 255).to(torch.uint8)
        return x, y, list(CIFAR10_CLASSES)
    if not root.exists():
        raise DataError(f"data path {root} does not exist; {HOW_TO_GET_DATA}")
    source = _split_source(root, split)
    if source is not None:
        return load_image_folder(source, size=size, skip_bad=skip_bad, classes=classes, progress=progress)
    raise DataError(f"no dataset under {root}: no {split}/ folder ({root}/{split}/<class>/<image>) and no "
                    f"CIFAR-10; {HOW_TO_GET_DATA}")


def _split_names(split: str) -> tuple[str, ...]:
    """Folder names of a split: ImageNet ships its test split as ``val/``."""
    return ("test", "val") if split == "test" else (split,)


# ------------------------------------------------------- streaming ImageFolder
class ImageFolderStream(torch.utils.data.Dataset):
    """An ImageFolder tree read lazily, one image per item: for datasets too big to hold decoded.

    ImageNet's 1.28M images do not fit in memory decoded, so with
    ``--loader stream`` each image is read and decoded when its batch is drawn,
    in the DataLoader's worker processes: any mode becomes RGB, then the
    shorter side is resized to ``size`` and the centre ``size x size`` kept
    (:func:`decode_image`), as uint8 ``(3, size, size)``. The SimCLR crop
    (Appendix A) is then taken on the training device from that image by
    :class:`~simclr_lite.augment.SimCLRAugment`, with every other augmentation.
    ``skip_bad`` replaces an unreadable image by the next readable one (and
    counts it in ``skipped`` of that worker); otherwise it raises
    :class:`DataError` naming the file. Book: chapter 7.
    """

    def __init__(self, folder: str | os.PathLike, size: int, classes: list[str] | None = None,
                 skip_bad: bool = False) -> None:
        self.folder = Path(folder).expanduser()
        if not self.folder.is_dir():
            raise DataError(f"{self.folder} is not a folder; --loader stream reads an ImageFolder tree "
                            f"<root>/<split>/<class>/<image> (extract archives first)")
        items = _list_folder(self.folder)
        found = sorted({c for c, _ in items})
        self.classes = list(classes) if classes is not None else found
        unknown = set(found) - set(self.classes)
        if unknown:
            raise DataError(f"classes {sorted(unknown)} in {self.folder} are not in the training classes")
        if not items:
            raise DataError(f"{self.folder} holds no files; put images in {self.folder}/<class>/<image>")
        index = {c: i for i, c in enumerate(self.classes)}
        self.files = [str(f) for _, f in items]
        self.labels = torch.tensor([index[c] for c, _ in items], dtype=torch.int64)
        self.size = size
        self.skip_bad = skip_bad
        self.skipped = 0

    def __len__(self) -> int:
        return len(self.files)

    def _decode(self, i: int) -> np.ndarray:
        name = self.files[i]
        try:
            with open(name, "rb") as fh:
                data = fh.read()
        except OSError as e:
            raise DataError(f"cannot read image {name}: {e.strerror}; check the file "
                            f"(or pass --skip-bad-images)") from None
        return _decode_file(data, name, self.size)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        for k in range(len(self.files)):
            j = (i + k) % len(self.files)
            try:
                arr = self._decode(j)
            except DataError:
                if not self.skip_bad:
                    raise
                self.skipped += 1
                continue
            return torch.from_numpy(np.array(arr)).permute(2, 0, 1).contiguous(), int(self.labels[j])
        raise DataError(f"{self.folder} holds no readable images; check the path")


def stream_dataset(path: str | os.PathLike | None, train: bool, size: int, skip_bad: bool = False,
                   classes: list[str] | None = None) -> ImageFolderStream:
    """The ``train/`` or ``test/`` (or ImageNet's ``val/``) split of a root as an :class:`ImageFolderStream`."""
    root = data_root(path)
    split = "train" if train else "test"
    if not root.exists():
        raise DataError(f"data path {root} does not exist; pass --data PATH (a folder with train/ and "
                        f"val/ or test/ ImageFolder trees)")
    for name in _split_names(split):
        if (root / name).is_dir():
            return ImageFolderStream(root / name, size, classes=classes, skip_bad=skip_bad)
    raise DataError(f"no {split}/ folder under {root}; --loader stream needs {root}/{split}/<class>/<image>"
                    + (" (or val/)" if split == "test" else ""))


def _is_cifar(root: Path, split: str) -> bool:
    found = _find_cifar_source(root, split)
    if found is None:
        return False
    kind, source = found
    if kind == "pickle":
        return True
    if kind == "folder":
        return sorted(d.name for d in source.iterdir() if d.is_dir()) == sorted(CIFAR10_CLASSES)
    return "cifar" in str(source).lower() or source.parent.name.lower().startswith("cifar")


# ------------------------------------------------------------ label subsets
def check_label_fraction(fraction: float) -> None:
    """The one rule for a label fraction (:func:`label_subset`, ``evaluate --label-fraction``): in (0, 1]."""
    if not 0 < fraction <= 1:   # also refuses NaN
        raise ConfigError(f"label fraction (--label-fraction) must be in (0, 1], got {fraction}; "  # a ValueError
                          f"Table 7 uses 0.01 and 0.1")


def label_subset(labels: torch.Tensor, fraction: float, seed: int = 0) -> torch.Tensor:
    """Indices of a class-balanced subset holding ``fraction`` of each class.

    Table 7 fine-tunes with 1% and 10% of ImageNet's labels, sampled per class;
    this is the same for any labelled set. Book: chapter 6.
    """
    check_label_fraction(fraction)
    g = torch.Generator().manual_seed(seed)
    out = []
    for c in torch.unique(labels):
        idx = torch.nonzero(labels == c).flatten()
        k = max(1, round(fraction * len(idx)))
        out.append(idx[torch.randperm(len(idx), generator=g)[:k]])
    return torch.sort(torch.cat(out)).values
