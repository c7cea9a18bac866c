"""Shared plumbing of the plotting functions (scanpy's ``ax``/``show`` conventions)."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def get_sae_uns(adata: Any, key: str) -> dict:
    """``adata.uns[key]`` as written by :func:`scsae.tl.sae`, or a helpful KeyError."""
    if key not in adata.uns or "params" not in adata.uns[key]:
        msg = f"adata.uns[{key!r}] not found; run scsae.tl.sae(adata, key_added={key!r}) first."
        raise KeyError(msg)
    return adata.uns[key]


def new_axes(ax: Axes | None, figsize: tuple[float, float] = (4.5, 3.5)) -> tuple[Figure, Axes]:
    """The given axes and its figure, or a fresh pair."""
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize)
    return fig, ax


def finish(
    fig: Figure, ax: Axes, *, show: bool | None, return_fig: bool, ax_given: bool
) -> Figure | Axes | None:
    """Show or return, like scanpy: show when interactive and nothing asked back."""
    if return_fig:
        return fig
    if show is None:
        show = not ax_given and plt.isinteractive()
    if show:
        plt.show()
        return None
    return ax
