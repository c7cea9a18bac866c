"""Plots for perturbation models: masks, predicted vs observed ATE, latent embedding."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from anndata import AnnData

from .._utils._docs import DOC_PLOT_RETURNS, DOC_SHOW, doc_params
from ._utils import finish, new_axes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _leaf_order(rows: np.ndarray) -> np.ndarray:
    """Row order of an average-linkage dendrogram (input order for fewer than 3 rows)."""
    from scipy.cluster.hierarchy import leaves_list, linkage

    if len(rows) < 3:
        return np.arange(len(rows))
    return leaves_list(linkage(rows, method="average", optimal_ordering=True))


def _spread(values: np.ndarray, gap: float) -> np.ndarray:
    """Label positions at least ``gap`` apart, as close to ``values`` as a sweep allows."""
    order = np.argsort(values)
    wanted = np.asarray(values, dtype=float)[order]
    out = wanted.copy()
    for i in range(1, len(out)):
        out[i] = max(out[i], out[i - 1] + gap)
    if len(out):
        out -= (out[-1] - wanted[-1]) / 2  # centre the pushed-up stack on its points
    result = np.empty_like(out)
    result[order] = out
    return result


@doc_params(show=DOC_SHOW, returns=DOC_PLOT_RETURNS)
def mask_heatmap(
    masks: Any,
    *,
    perturbations: Sequence[str] | None = None,
    cluster: bool = True,
    cmap: str = "Blues",
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool = False,
) -> Figure | Axes | None:
    """Heatmap of mask probabilities, perturbations x latent dimensions.

    Parameters
    ----------
    masks
        DataFrame from :meth:`SAMSVAE.get_mask_probabilities
        <scsae.models.SAMSVAE.get_mask_probabilities>`, or a trained SAMS-VAE
        (its :meth:`~scsae.models.SAMSVAE.get_mask_probabilities` is called).
    perturbations
        Rows to show, in this order; `None`: all.
    cluster
        Order latent dimensions, and the perturbations unless ``perturbations`` fixes
        them, by hierarchical clustering (average linkage of the mask rows / columns), so
        that perturbations sharing dimensions sit together.
    cmap
        Colour map; the scale is fixed from 0 (white with the default) to 1.
    {show}

    {returns}
    """
    if hasattr(masks, "get_mask_probabilities"):
        masks = masks.get_mask_probabilities()
    if not isinstance(masks, pd.DataFrame):
        msg = "masks must be a DataFrame (perturbations x latent dims) or a trained SAMSVAE."
        raise TypeError(msg)
    if perturbations is not None:
        missing = [p for p in perturbations if p not in masks.index]
        if missing:
            msg = (
                f"Perturbations {missing} are not rows of the masks; rows are {list(masks.index)}."
            )
            raise KeyError(msg)
        masks = masks.loc[list(perturbations)]
    if cluster:
        masks = masks.iloc[:, _leaf_order(masks.to_numpy().T)]
        if perturbations is None:
            masks = masks.iloc[_leaf_order(masks.to_numpy())]
    height = max(2.5, 0.22 * masks.shape[0] + 1)
    width = max(3.0, 0.3 * masks.shape[1] + 2)
    fig, ax_ = new_axes(ax, figsize=(width, height))
    image = ax_.imshow(
        masks.to_numpy(), aspect="auto", cmap=cmap, vmin=0, vmax=1, interpolation="nearest"
    )
    ax_.set_yticks(range(masks.shape[0]), labels=[str(p) for p in masks.index], fontsize=7)
    ax_.set_xticks(
        range(masks.shape[1]),
        labels=[str(c).replace("latent_", "") for c in masks.columns],
        fontsize=7,
    )
    ax_.set_xlabel("latent dimension")
    ax_.set_ylabel("perturbation")
    fig.colorbar(image, ax=ax_, label="q(mask = 1)", fraction=0.05, ticks=[0, 0.5, 1])
    return finish(fig, ax_, show=show, return_fig=return_fig, ax_given=ax is not None)


@doc_params(show=DOC_SHOW, returns=DOC_PLOT_RETURNS)
def ate_scatter(
    evaluation: pd.DataFrame,
    perturbation: str,
    *,
    n_top_genes: int | None = None,
    n_labels: int = 5,
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool = False,
) -> Figure | Axes | None:
    """Predicted against observed ATE of one perturbation, one dot per gene.

    Parameters
    ----------
    evaluation
        Output of :func:`scsae.tl.evaluate_ate` (its ``attrs`` hold both ATE tables).
    perturbation
        Label to draw.
    n_top_genes
        Top DE genes (largest absolute observed ATE) drawn in colour; `None`
        uses the evaluation's.
    n_labels
        Genes named in the plot (the largest observed effects).
    {show}

    {returns}
    """
    predicted, observed = evaluation.attrs.get("predicted"), evaluation.attrs.get("observed")
    if predicted is None or observed is None:
        msg = (
            "evaluation must be the output of scsae.tl.evaluate_ate (predicted/observed in .attrs)."
        )
        raise KeyError(msg)
    if perturbation not in observed.index:
        msg = f"{perturbation!r} was not evaluated; evaluated are {list(observed.index)}."
        raise KeyError(msg)
    n_top = evaluation.attrs.get("n_top_genes", 20) if n_top_genes is None else n_top_genes
    o = observed.loc[perturbation].to_numpy()
    p = predicted.loc[perturbation].to_numpy()
    order = np.argsort(-np.abs(o))
    top = order[:n_top]
    fig, ax_ = new_axes(ax, figsize=(4, 4))
    ax_.scatter(o, p, s=6, c="lightgrey", label="all genes")
    ax_.scatter(o[top], p[top], s=10, c="C3", label=f"top {n_top} DE")
    lim = float(np.nanmax(np.abs(np.concatenate([o, p])))) * 1.05 or 1.0
    ax_.plot([-lim, lim], [-lim, lim], lw=0.8, c="k", ls="--")
    ax_.axhline(0, lw=0.5, c="grey")
    ax_.axvline(0, lw=0.5, c="grey")
    # labels beside their points, spread vertically at least one text line apart so that
    # they never overlap, with a line to their gene
    ax_.set_xlim(-lim, lim)
    ax_.set_ylim(-lim, lim)
    labelled = order[:n_labels]
    line = 1.5 * 7 * fig.dpi / 72  # a 7-point text line with spacing, in pixels
    gap = line / max(ax_.get_window_extent().height, 1.0) * 2 * lim
    heights = _spread(p[labelled], gap=gap)
    if len(heights):  # keep the column inside the axes
        heights -= max(0.0, heights.max() - 0.95 * lim) - max(0.0, -0.95 * lim - heights.min())
    for g, y in zip(labelled, heights, strict=True):
        inward = -1 if o[g] > 0 else 1  # label towards the centre, inside the axes
        ax_.annotate(
            str(observed.columns[g]),
            (o[g], p[g]),
            xytext=(o[g] + inward * 0.12 * lim, y),
            fontsize=7,
            va="center",
            ha="right" if inward < 0 else "left",
            arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "grey"},
        )
    row = evaluation.loc[perturbation]
    ax_.set_title(
        f"{perturbation}: r_top={row['pearson_top']:.2f}, r_all={row['pearson_all']:.2f}",
        fontsize=9,
    )
    ax_.set_xlabel("observed ATE (log2)")
    ax_.set_ylabel("predicted ATE (log2)")
    ax_.legend(fontsize=7, frameon=False)
    return finish(fig, ax_, show=show, return_fig=return_fig, ax_given=ax is not None)


@doc_params(show=DOC_SHOW, returns=DOC_PLOT_RETURNS)
def perturbation_embedding(
    adata: AnnData,
    *,
    basis: str = "umap",
    perturbation_key: str = "target",
    groups: Sequence[str] | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool = False,
    **kwargs: Any,
) -> Figure | Axes | None:
    """Cells in a latent embedding coloured by perturbation (:func:`scanpy.pl.embedding`).

    Typical use: ``adata.obsm['X_samsvae'] = model.get_latent_representation(kind="basal")``,
    ``sc.pp.neighbors(adata, use_rep='X_samsvae')``, ``sc.tl.umap(adata)``, then this. Draw
    the basal latent: the full one adds each label's own shift, so it separates the
    perturbations by construction, whatever the data.

    Parameters
    ----------
    adata
        Annotated data matrix with ``obsm['X_' + basis]`` (or ``obsm[basis]``).
    basis
        Embedding to draw.
    perturbation_key
        Column of ``adata.obs`` with perturbation labels.
    groups
        Labels to highlight (the others are grey).
    {show}
    **kwargs
        Passed to :func:`scanpy.pl.embedding`.

    {returns}
    """
    import scanpy as sc

    if perturbation_key not in adata.obs:
        msg = f"perturbation_key={perturbation_key!r} is not a column of adata.obs; columns are {list(adata.obs.columns)}."
        raise KeyError(msg)
    if basis not in adata.obsm and f"X_{basis}" not in adata.obsm:
        msg = f"basis={basis!r} not in adata.obsm; keys are {list(adata.obsm)}. Compute it first (e.g. sc.tl.umap)."
        raise KeyError(msg)
    fig, ax_ = new_axes(ax, figsize=(5, 4))
    sc.pl.embedding(
        adata, basis=basis, color=perturbation_key, groups=groups, ax=ax_, show=False, **kwargs
    )
    return finish(fig, ax_, show=show, return_fig=return_fig, ax_given=ax is not None)
