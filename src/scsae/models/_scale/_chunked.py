"""Shuffled minibatches from embeddings that stay on disk (h5ad, zarr, dask).

Random access to single rows of an on-disk matrix is slow and dask graphs
for random rows are large, so the stream reads *contiguous chunks* in a
random order per epoch, on a background thread, into a buffer of bounded
size, and shuffles rows within that buffer. Memory is one buffer plus a few
chunks in flight, whatever the number of cells.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterator

import numpy as np
import torch

from ..._utils._embedding import Embedding
from ._batches import ShuffledBatches
from ._distributed import shard_bounds

#: default bytes per chunk read from disk
CHUNK_BYTES = 8 * 2**20
#: default bytes of the shuffle buffer: 262,144 cells of a 64-dim embedding, 8 chunks,
#: which keeps a 10M-cell run under 1.5 GB (the buffer is most of the loader's memory)
BUFFER_BYTES = 64 * 2**20

_DONE = object()


def _storage_rows(matrix: object) -> int | None:
    """Rows per storage chunk of an h5py/zarr/dask array, if it has chunks."""
    chunks = getattr(matrix, "chunks", None)
    if not chunks:
        return None
    first = chunks[0]
    if isinstance(first, tuple):  # dask: sizes of every chunk along the axis
        return int(max(first)) if first else None
    return int(first)


def default_chunk_rows(embedding: Embedding, chunk_bytes: int = CHUNK_BYTES) -> int:
    """About ``chunk_bytes`` of float32 rows, a multiple of the storage chunk when there is one."""
    rows = max(1, chunk_bytes // (4 * embedding.n_dims))
    storage = _storage_rows(embedding.matrix)
    if storage:
        rows = max(1, round(rows / storage)) * storage
    return int(min(rows, embedding.n_obs))


class ChunkedShuffledBatches(ShuffledBatches):
    """Minibatches of selected rows, streamed by chunk with a bounded shuffle buffer.

    Parameters
    ----------
    embedding
        Source matrix (any :class:`~scsae._utils._embedding.Embedding`, typically lazy).
    indices
        Rows to draw from (sorted; a train or validation split).
    batch_size
        Rows per (global) batch.
    shuffle
        Random chunk order and shuffling within the buffer, reseeded every epoch.
    drop_last
        Skip the last incomplete batch.
    seed
        Seed of the shuffling.
    chunk_rows
        Rows per contiguous read; default about 8 MiB of float32.
    buffer_rows
        Rows shuffled together; default about 64 MiB of float32 (at least one
        chunk and one batch).
    prefetch
        Chunks the background thread may read ahead.

    Notes
    -----
    Under data-parallel training (:meth:`set_shard`) the epoch's chunk order
    is shared by all ranks and split into contiguous shares of rows, so each
    rank reads only its own part of the data; each rank yields its slice of
    every global batch, the same number of batches on every rank.
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
        chunk_rows: int | None = None,
        buffer_rows: int | None = None,
        prefetch: int = 2,
    ) -> None:
        indices = np.asarray(indices, dtype=np.int64)
        if len(indices) > 1 and not (indices[1:] >= indices[:-1]).all():
            indices = np.sort(indices)
        super().__init__(
            embedding, indices, int(batch_size), shuffle=shuffle, drop_last=drop_last, seed=seed
        )
        self.chunk_rows = int(chunk_rows or default_chunk_rows(embedding))
        default_buffer = BUFFER_BYTES // (4 * embedding.n_dims)
        self.buffer_rows = int(max(buffer_rows or default_buffer, self.chunk_rows, batch_size))
        self.prefetch = prefetch
        starts = np.arange(0, embedding.n_obs, self.chunk_rows)
        self._bounds = np.searchsorted(self.indices, np.append(starts, embedding.n_obs))

    def _local(self) -> tuple[int, int, int]:
        """``(rows, batch rows, number of batches)`` of this rank."""
        n, w = len(self.indices), self.world_size
        shares = [shard_bounds(n, r, w) for r in range(w)]
        batches = [shard_bounds(self.batch_size, r, w) for r in range(w)]
        rows = [b - a for a, b in shares]
        sizes = [b - a for a, b in batches]
        if self.drop_last:
            n_batches = min(r // s for r, s in zip(rows, sizes, strict=True))
        else:
            n_batches = math.ceil(rows[self.rank] / sizes[self.rank])
        return rows[self.rank], sizes[self.rank], n_batches

    def __len__(self) -> int:
        return self._local()[2]

    def _pieces(self, order: np.ndarray) -> Iterator[tuple[int, int]]:
        """``(lo, hi)`` ranges of ``self.indices`` this rank reads, in chunk order."""
        counts = np.diff(self._bounds)[order]
        start, stop = shard_bounds(len(self.indices), self.rank, self.world_size)
        ends = np.cumsum(counts)
        for chunk, end, count in zip(order, ends, counts, strict=True):
            begin = end - count
            lo, hi = max(begin, start), min(end, stop)
            if lo < hi:
                offset = self._bounds[chunk] - begin
                yield int(lo + offset), int(hi + offset)

    def _read(self, lo: int, hi: int) -> np.ndarray:
        """Selected rows ``indices[lo:hi]`` as float32, from one contiguous read."""
        rows = self.indices[lo:hi]
        first, last = int(rows[0]), int(rows[-1]) + 1
        block = self.embedding.rows(slice(first, last))
        if last - first == len(rows):
            return block
        return block[rows - first]

    def _producer(self, order: np.ndarray, out: queue.Queue, stop: threading.Event) -> None:
        def put(item: object) -> bool:
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.1)
                except queue.Full:
                    continue
                return True
            return False

        try:
            for lo, hi in self._pieces(order):
                if not put(self._read(lo, hi)):
                    return
        except Exception as error:  # noqa: BLE001 - re-raised in the consumer
            put(error)
            return
        put(_DONE)

    def __iter__(self) -> Iterator[torch.Tensor]:
        epoch_rng = np.random.default_rng([self.seed, self.epoch])
        n_chunks = len(self._bounds) - 1
        order = epoch_rng.permutation(n_chunks) if self.shuffle else np.arange(n_chunks)
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, 1])
        self.epoch += 1
        _, batch, n_batches = self._local()
        pieces: queue.Queue = queue.Queue(maxsize=max(1, self.prefetch))
        stop = threading.Event()
        thread = threading.Thread(
            target=self._producer, args=(order, pieces, stop), daemon=True, name="scsae-loader"
        )
        thread.start()
        buffer = np.empty((self.buffer_rows, self.embedding.n_dims), dtype=np.float32)
        filled, pending, exhausted, yielded = 0, None, False, 0
        try:
            while yielded < n_batches:
                # fill the buffer behind the rows left over from the last round
                while filled < self.buffer_rows and not exhausted:
                    if pending is None:
                        item = pieces.get()
                        if item is _DONE:
                            exhausted = True
                            break
                        if isinstance(item, Exception):
                            raise item
                        pending = item
                    take = min(len(pending), self.buffer_rows - filled)
                    buffer[filled : filled + take] = pending[:take]
                    filled += take
                    pending = pending[take:] if take < len(pending) else None
                if filled == 0:
                    break
                perm = rng.permutation(filled) if self.shuffle else np.arange(filled)
                n_full = filled // batch
                last_round = exhausted and pending is None
                for b in range(n_full):
                    if yielded == n_batches:
                        break
                    # the fancy index copies, so the buffer can be refilled
                    yield torch.from_numpy(buffer[np.sort(perm[b * batch : (b + 1) * batch])])
                    yielded += 1
                rest = perm[n_full * batch :]
                if last_round:
                    if len(rest) and yielded < n_batches:
                        yield torch.from_numpy(buffer[np.sort(rest)])
                        yielded += 1
                    break
                buffer[: len(rest)] = buffer[np.sort(rest)]
                filled = len(rest)
        finally:
            stop.set()
            thread.join()
