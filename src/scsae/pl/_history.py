"""Training curves of an SAE."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._utils._docs import DOC_PLOT_RETURNS, DOC_SHOW, doc_params
from ._utils import finish, get_sae_uns, new_axes


def _history_of(data: Any, key: str) -> dict[str, np.ndarray]:
    history = getattr(data, "history", None)
    if isinstance(history, dict) and not hasattr(data, "uns"):  # a model
        return {name: np.asarray(df.iloc[:, 0]) for name, df in history.items()}
    return {name: np.asarray(v) for name, v in get_sae_uns(data, key).get("history", {}).items()}


def _y_label(metrics: list[str]) -> str:
    """What the y axis measures: one metric's name, or the quantity they share."""
    if all(m.endswith("fvu") for m in metrics):
        return "fraction of variance unexplained (FVU)"
    if all(m.endswith("l0") for m in metrics):
        return "active features per cell (L0)"
    if all("loss" in m for m in metrics):
        return "loss"
    return " / ".join(metrics)


@doc_params(show=DOC_SHOW, returns=DOC_PLOT_RETURNS)
def training_history(
    data: Any,
    *,
    key: str = "X_sae",
    metrics: tuple[str, ...] = ("train_fvu", "validation_fvu"),
    log_y: bool = True,
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool = False,
) -> Figure | Axes | None:
    """Plot per-epoch training metrics.

    Parameters
    ----------
    data
        AnnData/MuData processed by :func:`scsae.tl.sae`, or a trained
        :class:`~scsae.models.SparseAutoencoder`.
    key
        ``key_added`` of :func:`scsae.tl.sae` (ignored for a model).
    metrics
        History entries to draw (those missing, e.g. ``validation_fvu`` without a
        validation split, are skipped).
    log_y
        Logarithmic y axis.
    {show}

    {returns}
    """
    history = _history_of(data, key)
    present = [m for m in metrics if m in history]
    if not present:
        msg = f"None of {list(metrics)} in the training history; available: {sorted(history)}."
        raise KeyError(msg)
    fig, axes = new_axes(ax)
    for name in present:
        values = history[name]
        axes.plot(np.arange(1, len(values) + 1), values, label=name)
    axes.set_xlabel("epoch")
    axes.set_ylabel(_y_label(present))
    if log_y and all((history[m] > 0).all() for m in present):
        axes.set_yscale("log")
    axes.legend(frameon=False)
    return finish(fig, axes, show=show, return_fig=return_fig, ax_given=ax is not None)
