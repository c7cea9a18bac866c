"""In-memory minibatches: random rows of the stored matrix, reshuffled every epoch."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch

from ..._utils._embedding import Embedding
from ._distributed import shard_bounds


class ShuffledBatches:
    """Minibatches of rows of an embedding, reshuffled every epoch.

    Parameters
    ----------
    embedding
        Source matrix; rows are read and cast to float32 per batch.
    indices
        Rows to draw from (a train or validation split).
    batch_size
        Rows per batch.
    shuffle
        Reshuffle every epoch (seeded by ``seed`` and the epoch number).
    drop_last
        Skip the last incomplete batch (keeps batch statistics comparable).
    seed
        Seed of the shuffling.

    Under data-parallel training (:meth:`set_shard`) ``batch_size`` stays the
    global batch: each rank yields its near-equal slice of every global batch,
    so one step sees the same cells as on one device.
    """

    def __init__(
        self,
        embedding: Embedding,
        indices: np.ndarray,
        batch_size: int,
        *,
        shuffle: bool,
        drop_last: bool,
        seed: int = 0,
    ) -> None:
        self.embedding = embedding
        self.indices = np.asarray(indices)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last and len(self.indices) > batch_size
        self.seed = seed
        self.epoch = 0
        self.rank, self.world_size = 0, 1

    def set_shard(self, rank: int, world_size: int) -> None:
        """Yield only ``rank``'s part of each batch (of ``world_size`` ranks)."""
        if world_size > self.batch_size:
            msg = f"batch_size={self.batch_size} is smaller than the {world_size} ranks."
            raise ValueError(msg)
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        n = len(self.indices)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        order = self.indices
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch])
            order = order[rng.permutation(len(order))]
        self.epoch += 1
        for b in range(len(self)):
            batch = order[b * self.batch_size : (b + 1) * self.batch_size]
            if self.world_size > 1:
                start, stop = shard_bounds(len(batch), self.rank, self.world_size)
                batch = batch[start:stop]
                if not len(batch):
                    continue
            # sorted rows read faster from memory and from disk
            yield torch.from_numpy(self.embedding.rows(np.sort(batch)))
