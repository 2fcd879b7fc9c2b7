"""simclr_lite.sampling: the data order, the augmentation seeds and the split of a batch (Sharding)."""
from __future__ import annotations

import pytest
import torch

from simclr_lite.errors import ConfigError
from simclr_lite.sampling import AUTO_AUG_SHARDS, Sharding, epoch_permutation, seed_for, subset_indices


def test_epoch_permutation_is_seeded():
    assert torch.equal(epoch_permutation(100, 0, 3), epoch_permutation(100, 0, 3))
    assert not torch.equal(epoch_permutation(100, 0, 3), epoch_permutation(100, 0, 4))
    assert sorted(epoch_permutation(100, 1, 0).tolist()) == list(range(100))


def test_subset_indices_are_sorted_distinct_and_seeded():
    a = subset_indices(50, 10, seed=1)
    assert a.tolist() == sorted(set(a.tolist())) and len(a) == 10 and int(a.max()) < 50
    assert torch.equal(a, subset_indices(50, 10, seed=1)) and not torch.equal(a, subset_indices(50, 10, seed=2))


def test_seed_for_is_a_fixed_function_of_its_integers():
    assert seed_for(0, 1, 2) == seed_for(0, 1, 2) != seed_for(0, 2, 1)
    assert 0 <= seed_for(2 ** 70, -5) < 2 ** 63


@pytest.mark.parametrize("world", [1, 2, 4, 8])
def test_default_shards_do_not_depend_on_the_process_count(world):
    """aug_shards=0 cuts the batch into the same 8 parts on 1, 2, 4 and 8 processes: every image of the
    global batch is augmented by the same shard (and so the same generator) whatever the world size."""
    sh = Sharding.of(512, world)
    assert (sh.aug_shards, sh.local_batch, sh.shards_per_rank, sh.shard_size) == (8, 512 // world, 8 // world, 64)

    def owner(sh: Sharding) -> list[int]:   # the shard id of each row of the global batch
        ids = []
        for rank in range(sh.world_size):
            for sid, rows in sh.shards(rank):
                ids += [sid] * (rows.stop - rows.start)
        return ids
    assert owner(sh) == owner(Sharding.of(512, 1))
    assert sh.rows(world - 1) == slice(512 - 512 // world, 512)


def test_default_shards_fall_back_to_one_per_process():
    assert AUTO_AUG_SHARDS == 8
    assert Sharding.of(12, 2).aug_shards == 2       # 12 is no multiple of 8
    assert Sharding.of(64, 16).aug_shards == 16     # 8 does not split over 16 processes
    assert Sharding.of(24, 3).aug_shards == 3       # nor over 3
    assert Sharding.of(16, 2, aug_shards=4).shards(1) == [(2, slice(0, 4)), (3, slice(4, 8))]


@pytest.mark.parametrize("batch,world,shards,words", [
    (15, 2, 0, "global batch size 15 does not split evenly over 2 processes; use a multiple of 2"),
    (16, 2, 3, "--aug-shards 3 must be a multiple of the world size 2"),
    (16, 1, 5, "divide the batch size 16")])
def test_uneven_splits_are_one_line_errors(batch, world, shards, words):
    with pytest.raises(ConfigError, match=words):
        Sharding.of(batch, world, shards)
