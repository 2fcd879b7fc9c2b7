"""A split of a dataset as training and evaluation read it: in memory, or streamed.

Two loaders (``Config.loader``) give the same images: ``memory`` decodes a split
once into a uint8 tensor (CIFAR-10: 150 MB, kept on the training device);
``stream`` keeps the split on disk as an :class:`~simclr_lite.data.ImageFolderStream`
and decodes each batch in DataLoader workers (ImageNet-size trees). A
:class:`Split` hides which: ``x`` holds images or indices into the stream, and
:meth:`Split.features` and :meth:`Split.batches` read either. Training's kNN
monitor and ``python -m simclr_lite evaluate`` take their features from here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import torch

from .config import Config
from .data import ImageFolderStream, fingerprint, load_dataset, stream_dataset
from .errors import ConfigError
from .evaluate import extract_features


@dataclass
class Split:
    """Images ``x`` (uint8 ``(N, 3, H, W)``, or indices into ``stream``) and labels ``y``."""
    x: torch.Tensor
    y: torch.Tensor
    stream: ImageFolderStream | None = None

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, keep: torch.Tensor) -> "Split":
        return Split(self.x[keep], self.y[keep], self.stream)

    def fingerprint(self) -> str:
        """What the split holds (:func:`~simclr_lite.data.fingerprint`): its images and labels; for a
        stream, the files' names relative to its folder (not their bytes: ImageNet is 140 GB) and labels."""
        if self.stream is None:
            return fingerprint((self.x, self.y))
        names = "\n".join(os.path.relpath(self.stream.files[i], self.stream.folder) for i in self.x.tolist())
        return fingerprint((torch.frombuffer(bytearray(names.encode()), dtype=torch.uint8), self.y))

    @torch.no_grad()
    def features(self, encoder: torch.nn.Module, cfg: Config, device: torch.device,
                 rows: torch.Tensor | None = None) -> torch.Tensor:
        """h of the images ``rows`` (default: all); streamed images are centre-cropped to ``cfg.image_size``."""
        x = self.x if rows is None else self.x[rows]
        if self.stream is None:
            return extract_features(encoder, x, device=device)
        loader = torch.utils.data.DataLoader(torch.utils.data.Subset(self.stream, x.tolist()), batch_size=256,
                                             num_workers=cfg.workers, pin_memory=device.type == "cuda")
        out = []
        for images, _ in loader:
            o = (images.shape[-1] - cfg.image_size) // 2
            out.append(extract_features(encoder, images[..., o:o + cfg.image_size, o:o + cfg.image_size],
                                        device=device))
        return torch.cat(out)

    def batches(self, rows: list[torch.Tensor], cfg: Config, device: torch.device,
                on_device: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
        """The uint8 images of each list of ``rows``, on ``device``, in order.

        Memory: indexed from ``on_device`` (``x`` already moved to the device once).
        Stream: decoded by ``cfg.workers`` DataLoader workers, a few batches ahead.
        """
        if self.stream is None:
            images = self.x.to(device) if on_device is None else on_device
            for r in rows:
                yield images[r.to(device)]
            return
        loader = torch.utils.data.DataLoader(
            self.stream, batch_sampler=[self.x[r].tolist() for r in rows], num_workers=cfg.workers,
            pin_memory=device.type == "cuda", prefetch_factor=4 if cfg.workers else None)
        for images, _ in loader:
            yield images.to(device, non_blocking=True)


def stream_datasets(cfg: Config, data: str | os.PathLike | None = None,
                    ) -> tuple[ImageFolderStream, ImageFolderStream]:
    """The train and test splits of ``data`` (default ``cfg.data``) as read by ``loader=stream``."""
    decode = cfg.decode_size or round(cfg.image_size * 8 / 7)
    root = cfg.data if data is None else data
    train_ds = stream_dataset(root, True, decode, skip_bad=cfg.skip_bad_images)
    test_ds = stream_dataset(root, False, decode, skip_bad=cfg.skip_bad_images, classes=train_ds.classes)
    return train_ds, test_ds


def load_splits(cfg: Config, data: str | os.PathLike | None = None,
                tensors: tuple[torch.Tensor, ...] | None = None,
                progress: bool | None = None) -> tuple[Split, Split]:
    """The train and test :class:`Split` of ``data`` (default ``cfg.data``) as ``cfg.loader`` reads them.

    ``tensors``: ``(train_x, train_y, test_x, test_y)`` already decoded (the book's chapters).
    ``progress``: the decoding bar of :func:`~simclr_lite.data.load_dataset` (None: on a terminal).
    """
    if cfg.loader == "stream":
        if tensors is not None:
            raise ConfigError("pretrain(data=...) passes decoded tensors; it cannot be combined with loader=stream")
        train_ds, test_ds = stream_datasets(cfg, data)
        return (Split(torch.arange(len(train_ds)), train_ds.labels, train_ds),
                Split(torch.arange(len(test_ds)), test_ds.labels, test_ds))
    if tensors is not None:
        train_x, train_y, test_x, test_y = tensors
        return Split(train_x, train_y), Split(test_x, test_y)
    root = cfg.data if data is None else data
    train_x, train_y, classes = load_dataset(root, True, size=cfg.image_size, download=cfg.download,
                                             skip_bad=cfg.skip_bad_images, progress=progress)
    test_x, test_y, _ = load_dataset(root, False, size=cfg.image_size, download=cfg.download,
                                     skip_bad=cfg.skip_bad_images, classes=classes, progress=progress)
    return Split(train_x, train_y), Split(test_x, test_y)
