"""Feature density histogram, the standard SAE health plot."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._utils._docs import DOC_PLOT_RETURNS, DOC_SHOW, doc_params
from ._utils import finish, get_sae_uns, new_axes


@doc_params(show=DOC_SHOW, returns=DOC_PLOT_RETURNS)
def feature_density(
    adata: Any,
    *,
    key: str = "X_sae",
    bins: int = 40,
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool = False,
) -> Figure | Axes | None:
    """Histogram of log10 feature activation frequency.

    Healthy dictionaries show one broad mode well below 0 (features specific to
    subsets of cells). Dead features (never active) are counted in the title;
    dense features (active in > 10% of cells) lie right of the dashed line.

    Parameters
    ----------
    adata
        AnnData/MuData processed by :func:`scsae.tl.sae`.
    key
        ``key_added`` of :func:`scsae.tl.sae`.
    bins
        Number of histogram bins.
    {show}

    {returns}
    """
    frequency = np.asarray(get_sae_uns(adata, key)["feature_frequency"], dtype=float)
    alive = frequency[frequency > 0]
    n_dead = int((frequency == 0).sum())
    fig, axes = new_axes(ax)
    if alive.size:
        axes.hist(np.log10(alive), bins=bins, color="tab:blue")
    axes.axvline(np.log10(0.1), color="grey", linestyle="--", linewidth=1)
    axes.set_xlabel("log10 activation frequency")
    axes.set_ylabel("features")
    axes.set_title(f"{frequency.size} features, {n_dead} dead")
    return finish(fig, axes, show=show, return_fig=return_fig, ax_given=ax is not None)
