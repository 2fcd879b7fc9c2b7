"""What each step draws: the data order, the augmentation generators, and the split of a batch.

Every random draw of training is a function of integers: ``(seed, epoch)`` for
the data order, ``(seed, step, view, shard)`` for the augmentations. A run
resumed from any checkpoint therefore continues exactly, and a run split over
W processes draws the same views as one process, because the global batch is
cut into the same augmentation *shards* whatever the process count
(:class:`Sharding`). Algorithm 1's "for sampled minibatch" and "draw two
augmentation functions t ~ T, t' ~ T" are these draws.

(The data order lives here rather than in :mod:`simclr_lite.data`, which reads
images: this module decides which rows each step uses.)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import ConfigError

AUTO_AUG_SHARDS = 8   # aug_shards=0: the global batch's augmentation parts, whatever the process count


def seed_for(*parts: int) -> int:
    """A 63-bit seed from integers (FNV-1a style: the same on every platform and Python)."""
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (int(p) & 0xFFFFFFFFFFFF)) * 1099511628211) % (1 << 63)
    return h


def generator(device: torch.device, *parts: int) -> torch.Generator:
    """A generator on ``device`` seeded by :func:`seed_for` ``(*parts)``."""
    g = torch.Generator(device=device)
    g.manual_seed(seed_for(*parts))
    return g


def subset_indices(n: int, k: int, seed: int) -> torch.Tensor:
    """A seeded random subset of ``k`` of ``n`` indices, in increasing order (for train/test limits)."""
    return torch.randperm(n, generator=generator(torch.device("cpu"), seed, 11))[:k].sort().values


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The data order of an epoch: the same on every rank, and after a resume."""
    return torch.randperm(n, generator=generator(torch.device("cpu"), seed, epoch, 7))


@dataclass(frozen=True)
class Sharding:
    """How the global batch of a step is split: over W processes, and into S augmentation shards.

    Rank r holds rows ``[r * local_batch, (r + 1) * local_batch)`` of the global
    batch and augments them as shards ``r * shards_per_rank ...``, each of
    ``shard_size`` images with its own generator: so the views depend on S, never on W.
    """
    batch_size: int    # global batch N
    world_size: int    # processes W
    aug_shards: int    # augmentation shards S (resolved: never 0)

    @classmethod
    def of(cls, batch_size: int, world_size: int, aug_shards: int = 0) -> "Sharding":
        """Resolve ``aug_shards=0`` and check that everything splits evenly.

        ``aug_shards=0``: :data:`AUTO_AUG_SHARDS` (8) when it splits evenly over the
        processes and the batch, so 1, 2, 4 and 8 processes draw the same views;
        otherwise one shard per process.
        """
        if batch_size % world_size:
            raise ConfigError(f"global batch size {batch_size} does not split evenly over {world_size} processes; "
                              f"use a multiple of {world_size}")
        if aug_shards == 0:
            fits = AUTO_AUG_SHARDS % world_size == 0 and batch_size % AUTO_AUG_SHARDS == 0
            aug_shards = AUTO_AUG_SHARDS if fits else world_size
        if aug_shards % world_size or batch_size % aug_shards:
            raise ConfigError(f"--aug-shards {aug_shards} must be a multiple of the world size {world_size} and "
                              f"divide the batch size {batch_size}")
        return cls(batch_size, world_size, aug_shards)

    @property
    def local_batch(self) -> int:
        return self.batch_size // self.world_size

    @property
    def shards_per_rank(self) -> int:
        return self.aug_shards // self.world_size

    @property
    def shard_size(self) -> int:
        return self.batch_size // self.aug_shards

    def rows(self, rank: int) -> slice:
        """Rank ``rank``'s rows of the global batch."""
        return slice(rank * self.local_batch, (rank + 1) * self.local_batch)

    def shards(self, rank: int) -> list[tuple[int, slice]]:
        """``(shard id, rows of the local batch)`` of each augmentation shard rank ``rank`` draws."""
        first = rank * self.shards_per_rank
        return [(first + j, slice(j * self.shard_size, (j + 1) * self.shard_size))
                for j in range(self.shards_per_rank)]
