"""Assemble a CSR matrix block by block, without holding the blocks twice."""

from __future__ import annotations

import numpy as np
from scipy import sparse

_INT32_MAX = np.iinfo(np.int32).max


class CSRBuilder:
    """Append row blocks of a cells x features matrix; :meth:`to_csr` at the end.

    ``data`` and ``indices`` live in arrays that grow by half when full (an
    exact ``capacity``, e.g. ``n_cells * k`` for TopK, avoids any growth) and
    are shrunk in place at the end, so the peak memory is close to the final
    matrix rather than the list of blocks plus their stacked copy.

    Parameters
    ----------
    n_cols
        Number of columns (features).
    capacity
        Expected number of stored values.
    """

    def __init__(self, n_cols: int, *, capacity: int = 0) -> None:
        self.n_cols = int(n_cols)
        self._data = np.empty(max(int(capacity), 1024), dtype=np.float32)
        self._indices = np.empty_like(self._data, dtype=np.int32)
        self._counts: list[np.ndarray] = []
        self.nnz = 0

    def _reserve(self, extra: int) -> None:
        need = self.nnz + extra
        if need <= self._data.size:
            return
        size = max(need, int(self._data.size * 1.5))
        for name in ("_data", "_indices"):
            grown = np.empty(size, dtype=getattr(self, name).dtype)
            grown[: self.nnz] = getattr(self, name)[: self.nnz]
            setattr(self, name, grown)

    def append(self, block: np.ndarray | sparse.spmatrix | sparse.sparray) -> None:
        """Append rows: a dense array (zeros are dropped) or a sparse matrix."""
        csr = sparse.csr_matrix(block)
        if csr.shape[1] != self.n_cols:
            msg = f"block has {csr.shape[1]} columns, expected {self.n_cols}."
            raise ValueError(msg)
        csr.sum_duplicates()
        self._reserve(csr.nnz)
        self._data[self.nnz : self.nnz + csr.nnz] = csr.data
        self._indices[self.nnz : self.nnz + csr.nnz] = csr.indices
        self._counts.append(np.diff(csr.indptr))
        self.nnz += csr.nnz

    def to_csr(self) -> sparse.csr_matrix:
        """The assembled float32 CSR matrix (the builder is emptied)."""
        counts = np.concatenate(self._counts) if self._counts else np.zeros(0, dtype=np.int64)
        index_dtype = np.int32 if self.nnz <= _INT32_MAX else np.int64
        indptr = np.zeros(counts.size + 1, dtype=index_dtype)
        np.cumsum(counts, out=indptr[1:])
        data, indices = self._data, self._indices
        self._data = self._indices = np.empty(0, dtype=np.float32)
        self._counts = []
        # shrink in place (realloc), no second copy of the values
        data.resize(self.nnz, refcheck=False)
        indices.resize(self.nnz, refcheck=False)
        if index_dtype is np.int64:
            indices = indices.astype(np.int64)
        matrix = sparse.csr_matrix((counts.size, self.n_cols), dtype=np.float32)
        matrix.data, matrix.indices, matrix.indptr = data, indices, indptr
        return matrix
