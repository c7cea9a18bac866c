"""Scale: out-of-core minibatch streaming, chunked outputs and multi-process plumbing.

Shared by every model's training path (see :mod:`scsae.models._training`):

- :class:`ShuffledBatches` draws random rows of an in-memory matrix;
- :class:`ChunkedShuffledBatches` streams shuffled minibatches from
  embeddings that are not in memory (backed h5ad, zarr, dask), reading
  contiguous chunks in random order on a background thread and shuffling
  within a bounded buffer;
- :class:`CSRBuilder` assembles a CSR matrix block by block;
- :mod:`._distributed` gives each rank its shard and reduces statistics
  across ranks under Lightning's DDP.
"""

from ._batches import ShuffledBatches
from ._chunked import ChunkedShuffledBatches
from ._csr import CSRBuilder
from ._distributed import ShardBatches, broadcast_object, reduce_sum, world_size

__all__ = [
    "CSRBuilder",
    "ChunkedShuffledBatches",
    "ShardBatches",
    "ShuffledBatches",
    "broadcast_object",
    "reduce_sum",
    "world_size",
]
