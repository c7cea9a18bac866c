"""``pl.perturbation_effects``: clustered dotplot of the features each perturbation moves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._utils._docs import DOC_PLOT_RETURNS, DOC_SHOW, doc_params

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _effects(adata: Any, key: str, effects_key: str | None) -> pd.DataFrame:
    effects_key = effects_key or f"{key}_perturbation_effects"
    if effects_key not in adata.uns or "table" not in adata.uns[effects_key]:
        msg = (
            f"uns[{effects_key!r}] not found; run scsae.tl.perturbation_effects(adata, key={key!r}, "
            "perturbation_key=..., control=...) first."
        )
        raise KeyError(msg)
    tab = adata.uns[effects_key]["table"].copy()
    for col in ("perturbation", "feature"):
        tab[col] = tab[col].astype(str)
    return tab


def _auto_labels(adata: Any, key: str) -> pd.Series | None:
    """The automatic labels of :func:`scsae.tl.feature_table` when an SAE result is there."""
    from ..tl import feature_table

    if key not in adata.uns or "decoder" not in adata.uns[key]:
        return None  # not SAE activations (e.g. an scVI latent): no feature table
    return feature_table(adata, key)["label"]


def _pick_features(tab: pd.DataFrame, alpha: float, n_features: int) -> list[str]:
    """Features significant somewhere, strongest first (by |effect| of their best call)."""
    sig = tab[tab.qval < alpha]
    pool = sig if len(sig) else tab
    best = pool.assign(strength=pool.effect.abs()).groupby("feature").strength.max()
    return list(best.sort_values(ascending=False).index[:n_features])


@doc_params(show=DOC_SHOW, returns=DOC_PLOT_RETURNS)
def perturbation_effects(
    adata: Any,
    *,
    key: str = "X_sae",
    effects_key: str | None = None,
    features: Sequence[int | str] | None = None,
    perturbations: Sequence[str] | None = None,
    n_features: int = 30,
    alpha: float = 0.05,
    labels: str | Mapping | pd.Series | Sequence | None = "auto",
    cluster: bool = True,
    vmax: float | None = None,
    cmap: str = "RdBu_r",
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool = False,
) -> Figure | Axes | None:
    """Dotplot of features (rows) x perturbations (columns) from :func:`scsae.tl.perturbation_effects`.

    Colour is the standardised effect (Cohen's d; red: the perturbation raises the
    feature, blue: lowers it), dot size the change in the fraction of cells where
    the feature is active (absolute value), and a black ring marks calls with
    ``qval < alpha``. Rows and columns are ordered by average-linkage clustering
    of the effects, so perturbations acting on the same programme sit together.
    Features are rows so that their labels read horizontally.

    Parameters
    ----------
    adata
        AnnData processed by :func:`scsae.tl.perturbation_effects`.
    key
        ``key`` given to :func:`scsae.tl.perturbation_effects`.
    effects_key
        Its ``key_added`` (default ``key + '_perturbation_effects'``).
    features
        Features to show. `None`: the ``n_features`` features with the strongest
        significant effect (strongest effects when none is significant).
    perturbations
        Perturbations to show, in this order when ``cluster=False``; `None`: all.
    n_features
        Number of features shown when ``features`` is `None`.
    alpha
        q-value threshold of the ringed calls and the default feature choice.
    labels
        Feature labels: ``"auto"`` (the ``label`` column of
        :func:`scsae.tl.feature_table`, informative once
        :func:`~scsae.tl.feature_genes`, :func:`~scsae.tl.link_pathways` or
        :func:`~scsae.tl.feature_enrichment` ran), a Series/mapping/sequence by
        feature, or `None` for indices only.
    cluster
        Order rows and columns by hierarchical clustering of the effects.
    vmax
        Colour limit (symmetric); default the largest absolute effect shown.
    cmap
        Diverging colour map.
    {show}

    {returns}

    Examples
    --------
    >>> scsae.tl.perturbation_effects(adata, perturbation_key="target", control="non-targeting")
    >>> scsae.pl.perturbation_effects(adata, n_features=20)
    """
    from ._matrix import cluster_order, dotplot, feature_label
    from ._utils import finish, new_axes

    tab = _effects(adata, key, effects_key)
    if isinstance(labels, str):
        if labels != "auto":
            msg = f"labels={labels!r}; pass 'auto', labels by feature, or None."
            raise ValueError(msg)
        labels = _auto_labels(adata, key)
    all_perts = list(pd.unique(tab.perturbation))
    if perturbations is not None:
        missing = [p for p in perturbations if str(p) not in all_perts]
        if missing:
            msg = f"perturbations not in the table: {missing[:5]}; available: {all_perts[:20]}."
            raise KeyError(msg)
        all_perts = [str(p) for p in perturbations]
    if features is None:
        feats = _pick_features(tab[tab.perturbation.isin(all_perts)], alpha, n_features)
    else:
        known = set(tab.feature)
        feats = [str(f) for f in features]
        if not set(feats) <= known:
            msg = f"features {sorted(set(feats) - known)[:5]} are not in the table (0..{len(known) - 1})."
            raise IndexError(msg)

    sub = tab[tab.perturbation.isin(all_perts) & tab.feature.isin(feats)]
    grid = {
        name: sub.pivot(index="feature", columns="perturbation", values=name).loc[feats, all_perts]
        for name in ("effect", "diff_frac", "qval")
    }
    rows, cols = np.arange(len(feats)), np.arange(len(all_perts))
    if cluster:
        rows = cluster_order(grid["effect"].to_numpy(), axis=0)
        cols = cluster_order(grid["effect"].to_numpy(), axis=1)
    grid = {name: g.iloc[rows, cols] for name, g in grid.items()}
    names = [feature_label(int(f), labels) for f in grid["effect"].index]
    for g in grid.values():
        g.index = names

    limit = vmax or float(np.nanmax(np.abs(grid["effect"].to_numpy()))) or 1.0
    fig, ax_ = new_axes(ax, figsize=(2.5 + 0.3 * len(cols), 1.0 + 0.28 * len(rows)))
    dotplot(
        ax_,
        grid["effect"],
        grid["diff_frac"].abs(),
        cmap=cmap,
        vmin=-limit,
        vmax=limit,
        color_label="effect (Cohen's d)",
        size_label="|change in\nfraction active|",
    )
    r, c = np.nonzero(grid["qval"].to_numpy() < alpha)
    ax_.scatter(c, r, s=150, facecolors="none", edgecolors="black", linewidths=0.8)
    ax_.set_xlabel("perturbation")
    return finish(fig, ax_, show=show, return_fig=return_fig, ax_given=ax is not None)
