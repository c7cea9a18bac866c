"""Drawing of features x items matrices (heatmap, dotplot), shared by the feature plots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from scipy.cluster import hierarchy


def feature_indices(features: Any, n_features: int) -> list[int]:
    """Feature indices from ints or their string names, checked against the dictionary size."""
    if isinstance(features, int | np.integer | str):
        features = [features]
    out = []
    for f in features:
        try:
            i = int(f)
        except (TypeError, ValueError):
            msg = f"feature {f!r} is not a feature index; pass integers (or their strings)."
            raise ValueError(msg) from None
        if not 0 <= i < n_features:
            msg = f"feature {i} out of range: the SAE has {n_features} features (0..{n_features - 1})."
            raise IndexError(msg)
        out.append(i)
    if not out:
        msg = "No features given."
        raise ValueError(msg)
    return out


def feature_label(i: int, labels: Mapping | pd.Series | Sequence | None) -> str:
    """``"76"`` or ``"76: <label>"`` when labels (e.g. ``feature_table(...)['label']``) are given."""
    if labels is None:
        return str(i)
    try:
        label = (
            labels[str(i)]
            if isinstance(labels, Mapping | pd.Series) and str(i) in labels
            else labels[i]
        )
    except (KeyError, IndexError):
        return str(i)
    return f"{i}: {label}"


def cluster_order(values: np.ndarray, axis: int) -> np.ndarray:
    """Leaf order of average-linkage clustering of the rows (axis 0) or columns (axis 1)."""
    x = np.nan_to_num(values if axis == 0 else values.T)
    if x.shape[0] < 3:
        return np.arange(x.shape[0])
    return hierarchy.leaves_list(hierarchy.linkage(x, method="average", metric="euclidean"))


def heatmap(
    ax: Axes,
    values: pd.DataFrame,
    *,
    cmap: str,
    vmin: float,
    vmax: float,
    label: str,
    marks: np.ndarray | None,
) -> None:
    """Features (rows) x items (columns) heatmap with a colour bar; ``marks`` adds dots."""
    img = ax.imshow(
        values.to_numpy(), aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest"
    )
    if marks is not None:
        r, c = np.nonzero(marks)
        ax.scatter(c, r, s=6, c="black", marker="o", linewidths=0)
    _ticks(ax, values)
    ax.figure.colorbar(img, ax=ax, label=label, shrink=0.6)


def dotplot(
    ax: Axes,
    color: pd.DataFrame,
    size: pd.DataFrame,
    *,
    cmap: str,
    vmin: float,
    vmax: float,
    color_label: str,
    size_label: str,
    size_max: float | None = None,
) -> None:
    """Dots at each (row, column): area from ``size`` (scaled to its max), colour from ``color``."""
    s = np.nan_to_num(size.to_numpy(dtype=float))
    smax = size_max or (s.max() if s.max() > 0 else 1.0)
    rows, cols = np.indices(s.shape)
    sc = ax.scatter(
        cols.ravel(),
        rows.ravel(),
        s=120 * np.clip(s.ravel() / smax, 0, 1) + 2,
        c=color.to_numpy(dtype=float).ravel(),
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        edgecolors="grey",
        linewidths=0.3,
    )
    ax.set_xlim(-0.5, s.shape[1] - 0.5)
    ax.set_ylim(s.shape[0] - 0.5, -0.5)
    _ticks(ax, color)
    ax.figure.colorbar(sc, ax=ax, label=color_label, shrink=0.6)
    for frac in (0.25, 0.5, 1.0):
        ax.scatter([], [], s=120 * frac + 2, c="grey", label=f"{frac * smax:.2g}")
    ax.legend(
        title=size_label,
        loc="upper left",
        bbox_to_anchor=(1.25, 1),
        frameon=False,
        fontsize="small",
    )


def _ticks(ax: Axes, values: pd.DataFrame) -> None:
    ax.set_xticks(np.arange(values.shape[1]))
    ax.set_xticklabels([str(c) for c in values.columns], rotation=90, fontsize="small")
    ax.set_yticks(np.arange(values.shape[0]))
    ax.set_yticklabels([str(i) for i in values.index], fontsize="small")
