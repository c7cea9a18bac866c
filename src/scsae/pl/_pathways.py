"""Clustered heatmap / dotplot of features x pathways (gene sets, regulons)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._utils._docs import DOC_PLOT_RETURNS, DOC_SHOW, doc_params
from .._utils._features import get_modality, pathway_frames
from ._matrix import cluster_order, dotplot, feature_indices, feature_label, heatmap
from ._utils import finish, new_axes


@doc_params(show=DOC_SHOW, returns=DOC_PLOT_RETURNS)
def pathways(
    adata: Any,
    *,
    key: str = "X_sae",
    pathways_key: str | None = None,
    mod: str | None = None,
    features: Sequence[int | str] | None = None,
    sources: Sequence[str] | None = None,
    n_features: int = 20,
    n_sources: int = 15,
    kind: Literal["heatmap", "dotplot"] = "heatmap",
    cluster: bool = True,
    alpha: float = 0.05,
    labels: Mapping | pd.Series | None = None,
    cmap: str = "RdBu_r",
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool = False,
) -> Figure | Axes | None:
    """Enrichment scores of :func:`scsae.tl.link_pathways`, features x pathways.

    By default the ``n_features`` features with the highest score for any pathway,
    and the ``n_sources`` pathways with the highest score among them, clustered on
    both axes (average linkage).

    Parameters
    ----------
    adata
        AnnData (or MuData with ``mod``) processed by :func:`scsae.tl.link_pathways`.
    key
        ``key_added`` of :func:`scsae.tl.sae`.
    pathways_key
        ``key_added`` of :func:`scsae.tl.link_pathways` (default ``key + '_pathways'``).
    mod
        Modality of a MuData holding the pathway scores.
    features
        Features to show (rows); default: the top ``n_features``.
    sources
        Pathways to show (columns); default: the top ``n_sources``.
    n_features
        Features shown when ``features`` is not given.
    n_sources
        Pathways shown when ``sources`` is not given.
    kind
        ``"heatmap"`` (significant cells get a black dot: q < ``alpha``, the calibrated
        ``qvals`` of :func:`~scsae.tl.link_pathways`, else decoupler's adjusted p) or
        ``"dotplot"`` (dot size: ``-log10 q``).
    cluster
        Order rows and columns by hierarchical clustering (else: as selected).
    alpha
        Significance level of the heatmap's dots.
    labels
        Optional feature labels for the rows (e.g. ``feature_table(adata)['label']``).
    cmap
        Colour map of the scores (diverging, centred on 0).
    {show}

    {returns}

    Examples
    --------
    >>> scsae.tl.link_pathways(adata, "h.all.v7.0.symbols.gmt")
    >>> scsae.pl.pathways(adata, kind="dotplot")
    """
    if kind not in ("heatmap", "dotplot"):
        msg = f"kind={kind!r}; choose 'heatmap' or 'dotplot'."
        raise ValueError(msg)
    pathways_key = pathways_key or f"{key}_pathways"
    genes_ad, _ = get_modality(adata, mod)
    scores, padj = pathway_frames(genes_ad, pathways_key)
    if features is None:
        best = scores.max(axis=1).fillna(-np.inf)
        rows = [int(i) for i in best.sort_values(ascending=False).index[:n_features]]
    else:
        rows = feature_indices(features, scores.shape[0])
    sub = scores.iloc[rows]
    if sources is None:
        cols = list(sub.max(axis=0).fillna(-np.inf).sort_values(ascending=False).index[:n_sources])
    else:
        missing = [s for s in sources if s not in scores.columns]
        if missing:
            msg = f"sources {missing} not scored; e.g. {list(scores.columns[:5])}."
            raise KeyError(msg)
        cols = list(sources)
    values = scores.iloc[rows][cols]
    pvals = padj.iloc[rows][cols]
    if cluster:
        r, c = cluster_order(values.to_numpy(), 0), cluster_order(values.to_numpy(), 1)
        values, pvals = values.iloc[r, c], pvals.iloc[r, c]
    values.index = [feature_label(int(i), labels) for i in values.index]
    pvals.index = values.index
    values.columns = [str(s).removeprefix("HALLMARK_") for s in values.columns]
    pvals.columns = values.columns
    vmax = (
        float(np.nanmax(np.abs(values.to_numpy()))) if np.isfinite(values.to_numpy()).any() else 1.0
    )
    method = genes_ad.uns[pathways_key]["params"].get("method", "")
    fig, axes = new_axes(ax, figsize=(0.35 * len(cols) + 3.5, 0.3 * len(rows) + 2.5))
    if kind == "heatmap":
        marks = (pvals.to_numpy() < alpha) & np.isfinite(pvals.to_numpy())
        heatmap(
            axes, values, cmap=cmap, vmin=-vmax, vmax=vmax, label=f"{method} score", marks=marks
        )
    else:
        size = -np.log10(np.clip(pvals.fillna(1.0), 1e-10, 1))
        dotplot(
            axes,
            values,
            size,
            cmap=cmap,
            vmin=-vmax,
            vmax=vmax,
            color_label=f"{method} score",
            size_label="-log10 q",
        )
    axes.set_ylabel("feature")
    return finish(fig, axes, show=show, return_fig=return_fig, ax_given=ax is not None)
