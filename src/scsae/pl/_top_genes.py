"""Bar charts of each feature's top genes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._utils._features import gene_store, get_modality, get_sae_result
from ._matrix import feature_indices, feature_label
from ._utils import finish


def top_genes(
    adata: Any,
    features: int | str | Sequence[int | str],
    *,
    key: str = "X_sae",
    genes_key: str | None = None,
    mod: str | None = None,
    n_genes: int = 10,
    labels: Mapping | pd.Series | None = None,
    ncols: int = 4,
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool = False,
) -> Figure | Axes | list[Axes] | None:
    """Horizontal bars of the highest scoring genes of each feature.

    Parameters
    ----------
    adata
        AnnData (or MuData with ``mod``) processed by :func:`scsae.tl.feature_genes`.
    features
        Feature index or indices; one panel each.
    key
        ``key_added`` of :func:`scsae.tl.sae`.
    genes_key
        ``key_added`` of :func:`scsae.tl.feature_genes` (default ``key + '_genes'``).
    mod
        Modality of a MuData whose genes (peaks, proteins) to show.
    n_genes
        Genes per feature.
    labels
        Optional feature labels for the titles (e.g. ``feature_table(adata)['label']``).
    ncols
        Panels per row.
    ax
        Axes to draw into (one feature only).
    show
        Show the plot; by default when interactive and no ``ax`` is given.
    return_fig
        Return the figure.

    Returns
    -------
    The axes (a list for several features), or the figure with ``return_fig=True``,
    unless shown.

    Examples
    --------
    >>> scsae.pl.top_genes(adata, [76, 124], n_genes=15)
    """
    get_sae_result(adata, key)
    genes_key = genes_key or f"{key}_genes"
    genes_ad, _ = get_modality(adata, mod)
    store = gene_store(genes_ad, genes_key)
    scores = np.asarray(store.varm[genes_key])
    names = np.asarray(store.var_names.astype(str))
    idx = feature_indices(features, scores.shape[1])
    if ax is not None and len(idx) > 1:
        msg = f"ax= takes one feature; got {len(idx)}. Leave ax out to get one panel per feature."
        raise ValueError(msg)
    method = genes_ad.uns.get(genes_key, {}).get("params", {}).get("method", "")
    xlabel = {"association": "t statistic", "loadings": "loading"}.get(method, "score")
    if ax is None:
        ncols = min(ncols, len(idx))
        nrows = int(np.ceil(len(idx) / ncols))
        fig, axs = plt.subplots(
            nrows, ncols, figsize=(3.2 * ncols, 0.25 * n_genes * nrows + 1.2 * nrows), squeeze=False
        )
        axs = axs.ravel()
        for extra in axs[len(idx) :]:
            extra.remove()
        axs = list(axs[: len(idx)])
    else:
        fig, axs = ax.figure, [ax]
    for a, i in zip(axs, idx, strict=True):
        col = np.nan_to_num(scores[:, i])
        order = np.argsort(-col, kind="stable")[:n_genes]
        a.barh(np.arange(order.size), col[order], color="tab:red")
        a.set_yticks(np.arange(order.size))
        a.set_yticklabels(names[order], fontsize="small")
        a.invert_yaxis()
        a.set_xlabel(xlabel)
        a.set_title(f"feature {feature_label(i, labels)}", fontsize="medium")
    if ax is None:
        fig.tight_layout()
    result = finish(fig, axs[0], show=show, return_fig=return_fig, ax_given=ax is not None)
    if result is None or return_fig or len(axs) == 1:
        return result
    return axs
