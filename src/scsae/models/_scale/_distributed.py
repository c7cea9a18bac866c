"""Data-parallel plumbing: shards per rank and reductions across ranks.

Lightning hands plain iterables to every rank unchanged (it only swaps the
sampler of :class:`torch.utils.data.DataLoader`), so our batch streams shard
themselves: :class:`ShardBatches` tells them their rank when the trainer is
set up. ``batch_size`` stays the global batch: each rank draws its slice of
every global batch, and DDP averages their gradients.
"""

from __future__ import annotations

from typing import Any, Protocol

import lightning.pytorch as pl
import numpy as np
import torch


class Shardable(Protocol):
    """A batch stream that can draw one rank's part of every global batch."""

    def set_shard(self, rank: int, world_size: int) -> None:
        """Keep only ``rank``'s part of the data (of ``world_size`` ranks)."""


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """``[start, stop)`` of ``rank``'s part of ``n`` items split in ``world_size`` near-equal parts."""
    edges = np.linspace(0, n, world_size + 1).round().astype(int)
    return int(edges[rank]), int(edges[rank + 1])


class ShardBatches(pl.Callback):
    """Give each batch stream its rank and the number of ranks at ``setup``."""

    def __init__(self, *streams: Shardable | None) -> None:
        self.streams = [s for s in streams if s is not None]

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for stream in self.streams:
            stream.set_shard(trainer.global_rank, trainer.world_size)


def world_size(module: pl.LightningModule) -> int:
    """Number of ranks the module is trained on (1 outside a trainer)."""
    trainer = module._trainer
    return 1 if trainer is None else int(trainer.world_size)


def reduce_sum(module: pl.LightningModule, tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over ranks (the tensor itself on one rank)."""
    if world_size(module) == 1:
        return tensor
    return module.trainer.strategy.reduce(tensor, reduce_op="sum")


def broadcast_object(module: pl.LightningModule, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if world_size(module) == 1:
        return obj
    return module.trainer.strategy.broadcast(obj, src=0)
