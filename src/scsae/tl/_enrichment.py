"""``tl.feature_enrichment``: which cell types, conditions or batches each feature marks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scanpy import logging as logg
from scipy import sparse, stats

from .._utils._docs import doc_params
from .._utils._features import DOC_KEY, get_activations


def _column_ranks(acts: sparse.csc_matrix) -> tuple[sparse.csc_matrix, np.ndarray]:
    """Mid-ranks of every column, stored sparsely as an offset from the zeros' rank.

    Returns ``(offsets, zero_rank)``: the rank of cell ``i`` in feature ``j`` is
    ``zero_rank[j] + offsets[i, j]`` (zeros are tied, so most offsets are 0).
    """
    n_cells = acts.shape[0]
    data = np.empty_like(acts.data)
    zero_rank = np.empty(acts.shape[1])
    for j in range(acts.shape[1]):
        lo, hi = acts.indptr[j], acts.indptr[j + 1]
        vals = acts.data[lo:hi]
        n_zero = n_cells - vals.size
        # rank the non-zeros together with one zero, then widen the zero to n_zero ties
        ranks = stats.rankdata(np.append(vals, 0.0))
        n_neg = int((vals < 0).sum())
        zero_rank[j] = n_neg + (n_zero + 1) / 2
        r = ranks[:-1] + np.where(vals > 0, n_zero - 1, 0)
        data[lo:hi] = r - zero_rank[j]
    offsets = sparse.csc_matrix((data, acts.indices.copy(), acts.indptr.copy()), shape=acts.shape)
    return offsets, zero_rank


def _purity(acts: sparse.csc_matrix, codes: np.ndarray, n_c: np.ndarray, n_top: int) -> np.ndarray:
    """Share of each feature's top ``min(n_top, n_c)`` active cells that belong to each category.

    The number of top cells follows the category's size (precision at its size,
    capped at ``n_top``), so a feature that marks all 31 NK cells of a data set and
    nothing else has purity 1 for NK; a feature active in fewer cells counts those.
    Features active in fewer than 5 cells get NaN (too few cells to call).
    """
    n_feat, n_cat = acts.shape[1], n_c.size
    out = np.full((n_feat, n_cat), np.nan)
    for j in range(n_feat):
        lo, hi = acts.indptr[j], acts.indptr[j + 1]
        vals, idx = acts.data[lo:hi], acts.indices[lo:hi]
        order = idx[np.argsort(-vals, kind="stable")][: int((vals > 0).sum())]
        if order.size < 5:
            continue
        for c in range(n_cat):
            top = codes[order[: min(n_top, n_c[c])]]
            if top.size:
                out[j, c] = (top == c).mean()
    return out


def _enrichment(acts: sparse.csc_matrix, labels: pd.Series, n_top: int) -> dict[str, np.ndarray]:
    """AUROC (one category vs the other labelled cells), purity, mean and fraction active."""
    import scanpy as sc

    codes = labels.cat.codes.to_numpy()
    labelled = codes >= 0
    acts = acts[labelled] if not labelled.all() else acts
    codes = codes[labelled]
    cats = labels.cat.categories
    n_cells, n_cat = codes.size, len(cats)
    onehot = sparse.csr_matrix(
        (np.ones(n_cells), (np.arange(n_cells), codes)), shape=(n_cells, n_cat)
    )
    n_c = np.asarray(onehot.sum(axis=0)).ravel()
    offsets, zero_rank = _column_ranks(acts)
    rank_sum = np.asarray((onehot.T @ offsets).todense()).T + zero_rank[:, None] * n_c[None, :]
    n_rest = n_cells - n_c
    with np.errstate(invalid="ignore", divide="ignore"):
        auroc = (rank_sum - n_c * (n_c + 1) / 2) / (n_c * n_rest)
    groups = AnnData(
        sparse.csr_matrix(acts),
        obs=pd.DataFrame(
            {"g": pd.Categorical.from_codes(codes, cats)}, index=np.arange(n_cells).astype(str)
        ),
        layers={"active": sparse.csr_matrix(acts > 0, dtype=np.float64)},
    )
    agg = sc.get.aggregate(groups, "g", "mean")
    agg_active = sc.get.aggregate(groups, "g", "mean", layer="active")
    order = agg.obs_names.get_indexer(cats.astype(str))
    mean = np.full((acts.shape[1], n_cat), np.nan)
    frac = np.full((acts.shape[1], n_cat), np.nan)
    present = order >= 0  # aggregate leaves out empty categories
    mean[:, present] = np.asarray(agg.layers["mean"])[order[present]].T
    frac[:, present] = np.asarray(agg_active.layers["mean"])[order[present]].T
    return {
        "auroc": auroc.astype(np.float32),
        "purity": _purity(acts.tocsc(), codes, n_c.astype(np.int64), n_top).astype(np.float32),
        "mean": mean.astype(np.float32),
        "frac_active": frac.astype(np.float32),
        "categories": np.asarray(cats.astype(str)),
        "n_cells": n_c.astype(np.int64),
    }


@doc_params(key=DOC_KEY)
def feature_enrichment(
    adata: Any,
    groupby: str | Sequence[str],
    *,
    key: str = "X_sae",
    n_top_cells: int = 100,
    key_added: str | None = None,
    copy: bool = False,
) -> Any | None:
    """Score how well each feature marks each category of categorical ``obs`` columns.

    For every feature and category: the AUROC of the feature's activation for
    telling the category's cells from the other cells (0.5: no information, 1: the
    feature is higher in every cell of the category than in any other cell; ties
    at zero count half), the purity (the share of the feature's most activated
    cells that belong to the category), the mean activation and the fraction of
    cells where the feature is active (per-category means from
    :func:`scanpy.get.aggregate`). AUROC says the feature is specific to the
    category; purity says its top cells are of that category. A feature with high
    purity and modest AUROC marks a subset of the category. A feature with AUROC near 1 for a cell type "marks" it; one
    with high AUROC for a batch or donor column is a batch artefact. All features
    are scored at once from sparse rank sums; cells with a missing label are left
    out.

    Parameters
    ----------
    adata
        AnnData or MuData processed by :func:`scsae.tl.sae`.
    groupby
        One or more categorical (or string/boolean) ``obs`` columns: cell type,
        condition, batch, donor...
    {key}
    n_top_cells
        Most activated cells per feature for the purity: the top ``min(n_top_cells,
        category size)`` active cells (as :func:`~scsae.tl.feature_genes` defines a
        feature by its top 100 cells).
    key_added
        Key in ``uns``; default ``key + '_enrichment'``. Columns scored before under
        the same key are kept.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    `None`, or the copy when ``copy=True``. Sets, for each column ``g`` in ``groupby``:

    ``uns[key_added][g]['auroc']`` : :class:`numpy.ndarray` (features x categories)
        AUROC of one category against all other labelled cells.
    ``uns[key_added][g]['purity']`` : :class:`numpy.ndarray` (features x categories)
        Share of the feature's top ``min(n_top_cells, category size)`` active cells
        in the category (NaN for features active in fewer than 5 cells).
    ``uns[key_added][g]['mean']`` : :class:`numpy.ndarray` (features x categories)
        Mean activation in the category (inactive cells count as 0).
    ``uns[key_added][g]['frac_active']`` : :class:`numpy.ndarray` (features x categories)
        Fraction of the category's cells where the feature is active.
    ``uns[key_added][g]['categories']`` : :class:`numpy.ndarray` of str
        The categories (columns of the matrices).
    ``uns[key_added][g]['n_cells']`` : :class:`numpy.ndarray` of int
        Cells per category.
    ``uns[key_added]['params']`` : `dict`
        ``key``, ``n_top_cells`` and ``groupby`` (all columns scored under this key).

    Examples
    --------
    >>> scsae.tl.feature_enrichment(adata, "bulk_labels")
    >>> adata.uns["X_sae_enrichment"]["bulk_labels"]["auroc"].shape
    """
    if n_top_cells < 1:
        msg = f"n_top_cells={n_top_cells}; need at least 1."
        raise ValueError(msg)
    columns = [groupby] if isinstance(groupby, str) else list(groupby)
    missing = [c for c in columns if c not in adata.obs.columns]
    if missing:
        msg = f"groupby columns {missing} not in obs; available: {list(adata.obs.columns)}."
        raise KeyError(msg)
    acts = get_activations(adata, key)
    results = {}
    start = logg.info(f"scoring {acts.shape[1]} features against {columns}")
    for col in columns:
        values = adata.obs[col]
        if pd.api.types.is_float_dtype(values) and values.nunique() > 50:
            msg = (
                f"obs[{col!r}] looks continuous ({values.nunique()} distinct floats); "
                "pass a categorical column (e.g. pd.cut it first)."
            )
            raise ValueError(msg)
        labels = values.astype("category")
        if labels.isna().all():
            msg = f"obs[{col!r}] has no labelled cells."
            raise ValueError(msg)
        results[col] = _enrichment(acts, labels, n_top_cells)
    key_added = key_added or f"{key}_enrichment"
    target = adata.copy() if copy else adata
    previous = dict(target.uns.get(key_added, {}))
    done = [str(c) for c in previous.get("params", {}).get("groupby", [])]
    previous.update(results)
    previous["params"] = {
        "key": key,
        "n_top_cells": int(n_top_cells),
        "groupby": list(dict.fromkeys([*done, *columns])),
    }
    target.uns[key_added] = previous
    logg.info("    finished", time=start, deep=f"added\n    'uns[{key_added!r}]'")
    return target if copy else None
