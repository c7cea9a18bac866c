"""Access to the matrix a model reads: an ``obsm`` embedding, ``X`` or a layer.

All models and wrappers go through :func:`get_embedding`, so that the checks
(missing key, wrong shape, non-finite values) and their messages exist once.
Batches are cast to float32 on the fly, so no second copy of a large
embedding is ever held in memory.

Matrices that are not in memory (``X`` of an AnnData opened with
``backed="r"``, dask arrays as :func:`anndata.experimental.read_lazy` puts in
``obsm``, zarr or h5py arrays) are *lazy*: they are read by contiguous row
ranges only, and :meth:`Embedding.take` gathers scattered rows in one
sequential pass instead of random reads.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

# rows checked per chunk for NaN/inf: bounds the temporary boolean mask
_CHECK_CHUNK = 65_536
# rows per contiguous read when gathering scattered rows of a lazy matrix
_TAKE_CHUNK = 65_536


def _is_dask(matrix: object) -> bool:
    return type(matrix).__module__.startswith("dask.") and hasattr(matrix, "compute")


def _materialise(block: object) -> np.ndarray | sparse.spmatrix | sparse.sparray:
    """A block read from any supported matrix, as numpy or scipy sparse."""
    if _is_dask(block):
        # one thread: the caller may already be a loader thread, and h5py reads serialise
        block = block.compute(scheduler="synchronous")
    if sparse.issparse(block):
        return block
    return np.asarray(block)


def describe_rep(use_rep: str | None, layer: str | None) -> str:
    """Human-readable name of the input, for messages and ``params``."""
    if layer is not None:
        return f"layers[{layer!r}]"
    if use_rep in (None, "X"):
        return "X"
    return f"obsm[{use_rep!r}]"


@dataclass(frozen=True)
class Embedding:
    """A cells x dims matrix and the name it was read from.

    Parameters
    ----------
    matrix
        Dense array or scipy sparse matrix (kept as given, never copied).
    name
        Where it came from, e.g. ``"obsm['X_pca']"``.
    """

    matrix: np.ndarray | sparse.spmatrix | sparse.sparray
    name: str

    @property
    def n_obs(self) -> int:
        """Number of cells."""
        return int(self.matrix.shape[0])

    @property
    def n_dims(self) -> int:
        """Number of input dimensions."""
        return int(self.matrix.shape[1])

    @property
    def is_sparse(self) -> bool:
        """Whether the matrix is a scipy sparse matrix."""
        return sparse.issparse(self.matrix)

    @property
    def is_lazy(self) -> bool:
        """Whether the matrix is not in memory (backed, zarr, h5py or dask)."""
        return not isinstance(self.matrix, np.ndarray) and not sparse.issparse(self.matrix)

    def rows(self, index: np.ndarray | slice) -> np.ndarray:
        """Rows as a dense, C-contiguous float32 array.

        For a lazy matrix pass a slice (one contiguous read) or use :meth:`take`.
        """
        if self.is_lazy and not isinstance(index, slice):
            return self.take(np.asarray(index))
        block = _materialise(self.matrix[index])
        if sparse.issparse(block):
            block = block.toarray()
        return np.ascontiguousarray(block, dtype=np.float32)

    def take(self, index: np.ndarray) -> np.ndarray:
        """Rows ``index`` (sorted) as float32; lazy matrices are read by contiguous ranges."""
        index = np.asarray(index, dtype=np.int64)
        if not self.is_lazy:
            return self.rows(index)
        out = np.empty((len(index), self.n_dims), dtype=np.float32)
        for start, lo, hi in self._windows(index):
            out[lo:hi] = self.rows(slice(start, int(index[hi - 1]) + 1))[index[lo:hi] - start]
        return out

    def _windows(self, index: np.ndarray) -> Iterator[tuple[int, int, int]]:
        """``(first row, lo, hi)``: runs of ``index`` within ``_TAKE_CHUNK`` rows of each other."""
        lo = 0
        while lo < len(index):
            start = int(index[lo])
            hi = int(np.searchsorted(index, start + _TAKE_CHUNK, side="left"))
            yield start, lo, hi
            lo = hi

    def iter_rows(self, index: np.ndarray, block_size: int) -> Iterator[np.ndarray]:
        """Rows ``index`` (sorted) in order, as float32 blocks of at most about ``block_size``."""
        if not self.is_lazy:
            for start in range(0, len(index), block_size):
                yield self.rows(index[start : start + block_size])
            return
        index = np.asarray(index, dtype=np.int64)
        for start, lo, hi in self._windows(index):
            yield self.rows(slice(start, int(index[hi - 1]) + 1))[index[lo:hi] - start]

    def chunks(self, chunk_size: int) -> Iterator[tuple[slice, np.ndarray]]:
        """Consecutive row blocks, in order, as ``(slice, float32 rows)``."""
        for start in range(0, self.n_obs, chunk_size):
            sl = slice(start, min(start + chunk_size, self.n_obs))
            yield sl, self.rows(sl)

    def check_finite(self) -> None:
        """Raise a :class:`ValueError` naming the first bad cells if any value is NaN/inf."""
        n_bad = 0
        first_bad: list[int] = []
        for start in range(0, self.n_obs, _CHECK_CHUNK):
            block = _materialise(self.matrix[start : start + _CHECK_CHUNK])
            values = block.data if sparse.issparse(block) else np.asarray(block)
            if np.isfinite(values).all():
                continue
            dense = block.toarray() if sparse.issparse(block) else np.asarray(block)
            bad_rows = np.flatnonzero(~np.isfinite(dense).all(axis=1)) + start
            n_bad += bad_rows.size
            first_bad.extend(bad_rows[: max(0, 5 - len(first_bad))].tolist())
        if n_bad:
            msg = (
                f"{self.name} contains NaN or infinite values in {n_bad} cells "
                f"(first positions: {first_bad}). Remove or impute those cells first, "
                "e.g. `adata = adata[np.isfinite(emb).all(axis=1)].copy()`."
            )
            raise ValueError(msg)


def get_embedding(
    adata: AnnData, *, use_rep: str | None = "X_pca", layer: str | None = None
) -> Embedding:
    """Look up the matrix to model and check its shape.

    Parameters
    ----------
    adata
        AnnData or MuData.
    use_rep
        Key in ``obsm``, or ``"X"`` for ``X``; `None` only with ``layer``.
    layer
        Key in ``layers``; excludes ``use_rep``.

    Returns
    -------
    The matrix, wrapped with its name. Finiteness is checked separately by
    :meth:`Embedding.check_finite`, since it reads every value.
    """
    if layer is not None and use_rep not in (None, "X"):
        msg = f"Pass either use_rep={use_rep!r} or layer={layer!r}, not both."
        raise ValueError(msg)
    if use_rep is None and layer is None:
        msg = (
            "use_rep=None does not say which matrix to model; pass use_rep='X' for adata.X, "
            f"an obsm key (available: {list(getattr(adata, 'obsm', {}).keys())}) or layer=."
        )
        raise ValueError(msg)
    name = describe_rep(use_rep, layer)
    if layer is not None:
        layers = getattr(adata, "layers", None)
        if layers is None or layer not in layers:
            available = list(layers.keys()) if layers is not None else []
            msg = f"layer {layer!r} not found; available layers: {available}."
            raise KeyError(msg)
        matrix = layers[layer]
    elif use_rep in (None, "X"):
        matrix = getattr(adata, "X", None)
        if matrix is None:
            msg = (
                f"{type(adata).__name__} has no X. Pass use_rep=<an obsm key>; "
                f"available: {list(adata.obsm.keys())}."
            )
            raise ValueError(msg)
    else:
        if use_rep not in adata.obsm:
            msg = (
                f"use_rep={use_rep!r} is not in adata.obsm (available: {list(adata.obsm.keys())}). "
                "Compute it first, e.g. `sc.pp.pca(adata)` for 'X_pca', or pass use_rep='X'."
            )
            raise KeyError(msg)
        matrix = adata.obsm[use_rep]
    if isinstance(matrix, pd.DataFrame):
        matrix = matrix.to_numpy()
    if not sparse.issparse(matrix) and not hasattr(matrix, "shape"):
        matrix = np.asarray(matrix)
    if len(matrix.shape) != 2:
        msg = (
            f"{name} has shape {tuple(matrix.shape)}; a cells x dims matrix is needed. "
            "Reshape a single score with `x[:, None]`."
        )
        raise ValueError(msg)
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        msg = f"{name} is empty (shape {tuple(matrix.shape)}); it needs at least one cell and one dimension."
        raise ValueError(msg)
    first = _materialise(matrix[:1])
    if not sparse.issparse(first) and not np.issubdtype(first.dtype, np.number):
        msg = f"{name} has non-numeric dtype {first.dtype}."
        raise ValueError(msg)
    return Embedding(matrix=matrix, name=name)


#: cells sampled by :func:`embedding_diagnostics` (seeded), so atlases are checked quickly
DIAGNOSTIC_SAMPLE = 20_000
#: a cell this many RMS distances from the mean is an outlier
OUTLIER_DISTANCE = 10.0
#: a mean this many RMS distances from the origin is far from centred
OFFSET_RATIO = 10.0
#: duplicated cells above this fraction are reported
DUPLICATE_FRACTION = 0.01
#: a dimension whose SD is below this fraction of the largest SD is near-constant
CONSTANT_SD = 1e-6


def embedding_diagnostics(emb: Embedding, *, random_state: int = 0) -> dict[str, Any]:
    """Measure and warn about what makes an SAE fit badly, on a seeded sample of cells.

    Warns (:class:`UserWarning`, each naming the fix) on heavy outlier cells, a
    mean far from the origin relative to the spread, duplicated cells and
    near-constant dimensions; reads at most :data:`DIAGNOSTIC_SAMPLE` cells.

    Returns
    -------
    ``n_cells_checked``, ``max_distance`` (largest distance of a cell from the mean
    in RMS distances), ``n_outliers`` (cells beyond :data:`OUTLIER_DISTANCE`),
    ``mean_offset`` (norm of the mean in RMS distances), ``duplicate_fraction``
    and ``constant_dims`` (indices).
    """
    rng = np.random.default_rng(random_state)
    n = min(emb.n_obs, DIAGNOSTIC_SAMPLE)
    rows = np.sort(rng.choice(emb.n_obs, n, replace=False))
    x = emb.take(rows).astype(np.float64)
    if not np.isfinite(x).all():
        emb.check_finite()  # raises, naming the bad cells
    mean = x.mean(0)
    dist = np.linalg.norm(x - mean, axis=1)
    rms = float(np.sqrt(np.mean(dist**2)))
    scale = rms if rms > 0 else 1.0
    sd = x.std(0)
    report = {
        "n_cells_checked": int(n),
        "max_distance": float(dist.max() / scale),
        "n_outliers": int((dist > OUTLIER_DISTANCE * scale).sum()),
        "mean_offset": float(np.linalg.norm(mean) / scale),
        "duplicate_fraction": float(1 - np.unique(x, axis=0).shape[0] / n),
        "constant_dims": np.flatnonzero(sd <= CONSTANT_SD * max(sd.max(), 1e-300)).tolist(),
    }
    problems = []
    if report["n_outliers"]:
        problems.append(
            f"{report['n_outliers']} of {n} sampled cells lie more than {OUTLIER_DISTANCE:g} RMS "
            f"distances from the mean (farthest {report['max_distance']:.0f}); features may be "
            "spent on them. Check them for doublets or debris, or remove them."
        )
    if report["mean_offset"] > OFFSET_RATIO:
        problems.append(
            f"the mean lies {report['mean_offset']:.0f} RMS distances from the origin: an "
            "uncentred embedding (a known cause of mass death of SAE features). scsae centres "
            "it, but check this is the embedding you meant (not, e.g., raw counts)."
        )
    if report["duplicate_fraction"] > DUPLICATE_FRACTION:
        problems.append(
            f"{report['duplicate_fraction']:.1%} of sampled cells are exact duplicates; held-out "
            "figures then overlap training cells. Remove duplicates first."
        )
    if report["constant_dims"]:
        problems.append(
            f"dims {report['constant_dims'][:10]} are (near-)constant and carry no signal; "
            "drop them from the embedding."
        )
    for problem in problems:
        warnings.warn(f"{emb.name}: {problem}", UserWarning, stacklevel=3)
    return report
