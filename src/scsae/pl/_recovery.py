"""Plots of ground-truth recovery: matched cosine matrix, FVU/L0 trade-off per strategy."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._utils._docs import DOC_PLOT_RETURNS, DOC_SHOW, doc_params
from ._utils import finish, new_axes


@doc_params(show=DOC_SHOW, returns=DOC_PLOT_RETURNS)
def recovery_matrix(
    adata: Any,
    *,
    key: str = "X_sae_recovery",
    max_features: int | None = 200,
    cmap: str = "viridis",
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool = False,
) -> Figure | Axes | None:
    """Heatmap of ``|cosine|`` between true directions and their matched learned features.

    Rows are true features, columns the learned features matched to them (in
    the same order), so a recovered dictionary shows a bright diagonal on a
    dark background; off-diagonal structure shows features that split or
    merge true ones. Rows are sorted by matched cosine, best first.

    Parameters
    ----------
    adata
        AnnData processed by :func:`scsae.tl.feature_recovery` with a true dictionary.
    key
        ``key_added`` of :func:`scsae.tl.feature_recovery`.
    max_features
        Draw at most this many true features (evenly spaced over the sorted
        list); `None` draws all.
    cmap
        Colour map of ``|cosine|`` (0 to 1).
    {show}

    {returns}
    """
    info = adata.uns.get(key)
    if not isinstance(info, dict) or "cosine_matrix" not in info:
        msg = (
            f"adata.uns[{key!r}]['cosine_matrix'] not found; run "
            "scsae.tl.feature_recovery(adata, ...) with a true dictionary first."
        )
        raise KeyError(msg)
    if max_features is not None and max_features < 1:
        msg = f"max_features={max_features} must be at least 1 (or None for all)."
        raise ValueError(msg)
    cos = np.abs(np.asarray(info["cosine_matrix"], dtype=float))
    order = np.argsort(-np.diag(cos), kind="stable")
    if max_features is not None and order.size > max_features:
        order = order[np.linspace(0, order.size - 1, max_features).round().astype(int)]
    shown = cos[np.ix_(order, order)]
    fig, axes = new_axes(ax, figsize=(4.5, 4))
    image = axes.imshow(shown, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(image, ax=axes, label="|cosine|", shrink=0.8)
    metrics = info.get("metrics", {})
    title = f"{order.size} of {cos.shape[0]} true features"
    if "dictionary_mcc" in metrics:
        title += f"; MCC {metrics['dictionary_mcc']:.2f}"
    axes.set_title(title)
    axes.set_xlabel("matched learned feature")
    axes.set_ylabel("true feature")
    axes.set_xticks([])
    axes.set_yticks([])
    return finish(fig, axes, show=show, return_fig=return_fig, ax_given=ax is not None)


@doc_params(show=DOC_SHOW, returns=DOC_PLOT_RETURNS)
def inference_tradeoff(
    data: Any,
    *,
    key: str = "inference_comparison",
    x: str = "mean_l0",
    y: str = "fvu",
    by: str = "strategy",
    log_y: bool = True,
    noise_floor: float | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool = False,
) -> Figure | Axes | None:
    """FVU against mean L0, one colour per inference strategy.

    Points of one strategy (e.g. several penalties or ``k``) are joined in
    order of ``x``; lower-left is better: fewer active features explaining
    more variance.

    Parameters
    ----------
    data
        A table with columns ``by``, ``x`` and ``y`` (a :class:`pandas.DataFrame`,
        e.g. the one ``benchmarks/inference_strategies.py`` builds from
        :meth:`~scsae.models.SparseAutoencoder.get_metrics`), or an AnnData whose
        ``uns[key]`` holds such a table as a dict of columns.
    key
        ``uns`` key of the table when ``data`` is an AnnData.
    x
        Column on the horizontal axis.
    y
        Column on the vertical axis.
    by
        Column naming the strategy of each row.
    log_y
        Logarithmic vertical axis (FVU spans orders of magnitude).
    noise_floor
        Draw this FVU as a dashed line (e.g. ``uns['simulation']['noise_fvu']``).
    {show}

    {returns}
    """
    if isinstance(data, pd.DataFrame):
        table = data
    else:
        uns = getattr(data, "uns", None)
        if uns is None or key not in uns:
            msg = f"Pass a DataFrame, or an AnnData with the table in uns[{key!r}]."
            raise KeyError(msg)
        table = pd.DataFrame(dict(uns[key]))
    missing = [c for c in (x, y, by) if c not in table.columns]
    if missing:
        msg = f"Columns {missing} not in the table; it has {list(table.columns)}."
        raise KeyError(msg)
    fig, axes = new_axes(ax)
    for name, group in table.groupby(by, sort=False, observed=True):
        group = group.sort_values(x)
        axes.plot(group[x], group[y], marker="o", label=str(name))
    if noise_floor is not None:
        axes.axhline(noise_floor, color="grey", linestyle="--", linewidth=1, label="noise floor")
    if log_y:
        axes.set_yscale("log")
    axes.set_xlabel("mean L0" if x == "mean_l0" else x)
    axes.set_ylabel("FVU" if y == "fvu" else y)
    axes.legend(frameon=False, fontsize="small")
    return finish(fig, axes, show=show, return_fig=return_fig, ax_given=ax is not None)
