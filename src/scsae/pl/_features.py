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


def default_features(adata: Any, key: str, n: int = 4) -> list[int]:
    """Features worth a first look: the most specific to a category, else the most frequent.

    Specific: highest AUROC x purity in :func:`scsae.tl.feature_enrichment` (each
    category once, so four panels show four cell types); without it, the most
    frequently active features.
    """
    from ..tl import feature_table

    table = feature_table(adata, key)
    live = table[table["n_cells"] > 0]
    if "purity" in live.columns:
        ranked = live.assign(spec=live["auroc"] * live["purity"].fillna(0)).sort_values(
            "spec", ascending=False, kind="stable"
        )
        picked = ranked.drop_duplicates(["best_obs", "best_category"]).index[:n].tolist()
        rest = [i for i in ranked.index if i not in picked]
        return [int(i) for i in (picked + rest)[:n]]
    return [int(i) for i in live.sort_values("frequency", ascending=False).index[:n]]


def _auto_labels(adata: Any, key: str) -> pd.Series | None:
    """Labels of :func:`scsae.tl.feature_table` when any interpretation step has run."""
    from ..tl import feature_table

    table = feature_table(adata, key)
    informative = table["label"] != [f"feature {i}" for i in table.index]
    return table["label"] if informative.any() else None


def features(
    adata: Any,
    features: int | str | Sequence[int | str] | None = None,
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
    ``show``, ``return_fig``, ``save``...). Axes are named as scanpy names the basis
    (``UMAP1``/``UMAP2``), colour bars "activation", titles carry each feature's label.

    Parameters
    ----------
    adata
        AnnData or MuData processed by :func:`scsae.tl.sae`, with ``obsm['X_' + basis]``.
    features
        Feature index or indices. `None`: four features worth a first look, the most
        specific to a category (AUROC x purity of :func:`scsae.tl.feature_enrichment`,
        one per category), else the most frequent.
    key
        ``key_added`` of :func:`scsae.tl.sae`.
    basis
        Embedding to draw on (``"umap"`` reads ``obsm['X_umap']``).
    labels
        Feature labels for the panel titles. `None`: the ``label`` column of
        :func:`scsae.tl.feature_table` when genes, pathways or categories were scored.
    **kwargs
        Passed to :func:`scanpy.pl.embedding`.

    Returns
    -------
    What :func:`scanpy.pl.embedding` returns: axes (a list for several panels), the
    figure with ``return_fig=True``, or `None` when shown.

    Examples
    --------
    >>> scsae.pl.features(adata)  # the most specific features, labelled
    >>> scsae.pl.features(adata, [76, 124], basis="umap")
    """
    get_sae_result(adata, key)
    acts = adata.obsm[key]
    name = basis if basis in adata.obsm else f"X_{basis}"
    if name not in adata.obsm:
        msg = f"basis {basis!r} not found: no obsm[{name!r}]; available: {list(adata.obsm.keys())}."
        raise KeyError(msg)
    if features is None:
        features = default_features(adata, key)
    idx = feature_indices(features, acts.shape[1])
    if labels is None:
        labels = _auto_labels(adata, key)
    cols = acts[:, idx]
    cols = cols.toarray() if sparse.issparse(cols) else np.asarray(cols)
    names = [f"feature {feature_label(i, labels)}" for i in idx]
    tmp = AnnData(
        obs=pd.DataFrame(cols, index=adata.obs_names.astype(str), columns=names),
        obsm={name: np.asarray(adata.obsm[name])},
    )
    kwargs.setdefault("vmin", 0)
    kwargs.setdefault("cmap", "Reds")
    show = kwargs.pop("show", None)
    # scanpy names the axes after the basis: "umap" -> UMAP1/UMAP2, "X_umap" -> X_umap1
    out = sc.pl.embedding(tmp, basis=name.removeprefix("X_"), color=names, show=False, **kwargs)
    first = out[0] if isinstance(out, list) else out
    fig = first if kwargs.get("return_fig") else first.figure
    for ax in fig.axes:
        for coll in ax.collections:
            if getattr(coll, "colorbar", None) is not None:
                coll.colorbar.set_label("activation")
    if sc.settings.autoshow if show is None else show:
        import matplotlib.pyplot as plt

        plt.show()
        return None
    return out
