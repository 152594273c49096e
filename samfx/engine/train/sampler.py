"""A batch sampler that can restart mid-epoch and shards global batches across DDP ranks.

Epoch ``e`` uses the permutation drawn from ``derive_seed(seed, e)``; batch ``k`` of the epoch is
``perm[k*B:(k+1)*B]`` for the *global* batch size B, and rank r of W gets the r-th of W equal
slices. So a resumed run skips exactly the batches already seen, and W processes with B/W each
see the same global batches as one process with B.

Batches are lists of ``(epoch, index)`` keys for :class:`samfx.engine.run.seeding.EpochSeeded`: the epoch
travels with each index, so a persistent DataLoader worker (which keeps its own copy of the dataset
from the first epoch) still draws the right epoch's augmentation.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from samfx.contracts.errors import SamfxError
from samfx.engine.run.seeding import derive_seed


class ResumableBatchSampler(Sampler[list[tuple[int, int]]]):
    def __init__(self, n: int, batch_size: int, seed: int, shuffle: bool = True, drop_last: bool = True,
                 rank: int = 0, world_size: int = 1):
        if batch_size % world_size:
            raise SamfxError(f"data.batch_size {batch_size} is the global batch; it must be divisible by the "
                             f"{world_size} processes; use a multiple of {world_size}")
        if drop_last and n < batch_size:
            raise SamfxError(f"data.batch_size {batch_size} is larger than the training split ({n} items); "
                             f"lower data.batch_size")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.shuffle, self.drop_last = shuffle, drop_last
        self.rank, self.world_size = rank, world_size
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Start `epoch` at its batch number `skip` (batches 0..skip-1 were already trained on)."""
        self.epoch, self.skip = epoch, skip

    def batches_per_epoch(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def global_batches(self) -> list[list[int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(derive_seed("epoch", self.seed, self.epoch))
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        return [order[i * self.batch_size:(i + 1) * self.batch_size] for i in range(self.batches_per_epoch())]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        per = self.batch_size // self.world_size
        for batch in self.global_batches()[self.skip:]:
            yield [(self.epoch, i) for i in batch[self.rank * per:(self.rank + 1) * per]]

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch() - self.skip)
