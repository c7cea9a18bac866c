"""Feature activations on an embedding (UMAP...), drawn by :func:`scanpy.pl.embedding`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scanpy as sc
from anndata import AnnData
from scipy import sparse

from .._utils._features import get_sae_result
from ._matrix import feature_indices, feature_label


def features(
    adata: Any,
    features: int | str | Sequence[int | str],
    *,
    key: str = "X_sae",
    basis: str = "umap",
    labels: Mapping | pd.Series | None = None,
    **kwargs: Any,
) -> Any:
    """Feature activations on an embedding, one panel per feature.

    A thin wrapper over :func:`scanpy.pl.embedding`: activations are passed as
    temporary colour columns (``adata`` is not modified), so every option of
    scanpy's embedding plots works (``ncols``, ``cmap``, ``vmax="p99"``, ``ax``,
    ``show``, ``return_fig``, ``save``...).

    Parameters
    ----------
    adata
        AnnData or MuData processed by :func:`scsae.tl.sae`, with ``obsm['X_' + basis]``.
    features
        Feature index or indices.
    key
        ``key_added`` of :func:`scsae.tl.sae`.
    basis
        Embedding to draw on (``"umap"`` reads ``obsm['X_umap']``).
    labels
        Optional feature labels for the panel titles, e.g.
        ``scsae.tl.feature_table(adata)["label"]``.
    **kwargs
        Passed to :func:`scanpy.pl.embedding`.

    Returns
    -------
    What :func:`scanpy.pl.embedding` returns: axes (a list for several panels), the
    figure with ``return_fig=True``, or `None` when shown.

    Examples
    --------
    >>> scsae.pl.features(adata, [76, 124], basis="umap")
    """
    get_sae_result(adata, key)
    acts = adata.obsm[key]
    idx = feature_indices(features, acts.shape[1])
    name = basis if basis in adata.obsm else f"X_{basis}"
    if name not in adata.obsm:
        msg = f"basis {basis!r} not found: no obsm[{name!r}]; available: {list(adata.obsm.keys())}."
        raise KeyError(msg)
    cols = acts[:, idx]
    cols = cols.toarray() if sparse.issparse(cols) else np.asarray(cols)
    names = [f"feature {feature_label(i, labels)}" for i in idx]
    tmp = AnnData(
        obs=pd.DataFrame(cols, index=adata.obs_names.astype(str), columns=names),
        obsm={name: np.asarray(adata.obsm[name])},
    )
    kwargs.setdefault("vmin", 0)
    kwargs.setdefault("cmap", "Reds")
    return sc.pl.embedding(tmp, basis=name, color=names, **kwargs)
