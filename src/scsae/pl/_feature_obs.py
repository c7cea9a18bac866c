"""Dotplot of features x categories of an ``obs`` column (cell types, conditions, batches)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._utils._docs import DOC_PLOT_RETURNS, DOC_SHOW, doc_params
from .._utils._features import enrichment_frames
from ._matrix import dotplot, feature_indices, feature_label
from ._utils import finish, new_axes


@doc_params(show=DOC_SHOW, returns=DOC_PLOT_RETURNS)
def feature_obs(
    adata: Any,
    groupby: str,
    *,
    key: str = "X_sae",
    enrichment_key: str | None = None,
    features: Sequence[int | str] | None = None,
    n_per_category: int = 2,
    color: Literal["auroc", "mean"] = "auroc",
    labels: Mapping | pd.Series | None = None,
    cmap: str = "Reds",
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool = False,
) -> Figure | Axes | None:
    """Which features mark which categories: dot colour AUROC (or mean), size fraction active.

    Parameters
    ----------
    adata
        AnnData or MuData processed by :func:`scsae.tl.feature_enrichment`.
    groupby
        The ``obs`` column scored by :func:`scsae.tl.feature_enrichment`.
    key
        ``key_added`` of :func:`scsae.tl.sae`.
    enrichment_key
        ``key_added`` of :func:`scsae.tl.feature_enrichment` (default ``key + '_enrichment'``).
    features
        Features to show (rows). Default: the ``n_per_category`` features with the
        highest AUROC for each category, in category order (a diagonal).
    n_per_category
        Features per category when ``features`` is not given.
    color
        ``"auroc"`` (0.5 to 1) or ``"mean"`` activation.
    labels
        Optional feature labels for the rows (e.g. ``feature_table(adata)['label']``).
    cmap
        Colour map.
    {show}

    {returns}

    Examples
    --------
    >>> scsae.tl.feature_enrichment(adata, "bulk_labels")
    >>> scsae.pl.feature_obs(adata, "bulk_labels")
    """
    if color not in ("auroc", "mean"):
        msg = f"color={color!r}; choose 'auroc' or 'mean'."
        raise ValueError(msg)
    frames = enrichment_frames(adata, groupby, key=enrichment_key or f"{key}_enrichment")
    auroc = frames["auroc"]
    if features is None:
        rows: list[int] = []
        for cat in auroc.columns:
            for i in auroc[cat].fillna(-np.inf).sort_values(ascending=False).index[:n_per_category]:
                if int(i) not in rows:
                    rows.append(int(i))
    else:
        rows = feature_indices(features, auroc.shape[0])
    values = frames[color].iloc[rows]
    size = frames["frac_active"].iloc[rows]
    values.index = size.index = [feature_label(i, labels) for i in rows]
    if color == "auroc":
        vmin, vmax, label = 0.5, 1.0, "AUROC"
    else:
        vmin, vmax, label = 0.0, float(np.nanmax(values.to_numpy())) or 1.0, "mean activation"
    fig, axes = new_axes(ax, figsize=(0.4 * auroc.shape[1] + 4, 0.3 * len(rows) + 2.5))
    dotplot(
        axes,
        values,
        size,
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        color_label=label,
        size_label="fraction active",
        size_max=1.0,
    )
    axes.set_xlabel(groupby)
    axes.set_ylabel("feature")
    return finish(fig, axes, show=show, return_fig=return_fig, ax_given=ax is not None)
