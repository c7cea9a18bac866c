"""``tl.feature_enrichment``: which cell types, conditions or batches each feature marks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
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


def _enrichment(acts: sparse.csc_matrix, labels: pd.Series) -> dict[str, np.ndarray]:
    """AUROC (one category vs the other labelled cells), mean and fraction active."""
    codes = labels.cat.codes.to_numpy()
    labelled = codes >= 0
    acts = acts[labelled] if not labelled.all() else acts
    codes = codes[labelled]
    n_cells, n_cat = codes.size, len(labels.cat.categories)
    onehot = sparse.csr_matrix(
        (np.ones(n_cells), (np.arange(n_cells), codes)), shape=(n_cells, n_cat)
    )
    n_c = np.asarray(onehot.sum(axis=0)).ravel()
    offsets, zero_rank = _column_ranks(acts)
    rank_sum = np.asarray((onehot.T @ offsets).todense()).T + zero_rank[:, None] * n_c[None, :]
    n_rest = n_cells - n_c
    with np.errstate(invalid="ignore", divide="ignore"):
        auroc = (rank_sum - n_c * (n_c + 1) / 2) / (n_c * n_rest)
        mean = np.asarray((onehot.T @ acts).todense()).T / n_c
        frac = np.asarray((onehot.T @ (acts > 0).astype(np.float64)).todense()).T / n_c
    return {
        "auroc": auroc.astype(np.float32),
        "mean": mean.astype(np.float32),
        "frac_active": frac.astype(np.float32),
        "categories": np.asarray(labels.cat.categories.astype(str)),
        "n_cells": n_c.astype(np.int64),
    }


@doc_params(key=DOC_KEY)
def feature_enrichment(
    adata: Any,
    groupby: str | Sequence[str],
    *,
    key: str = "X_sae",
    key_added: str | None = None,
    copy: bool = False,
) -> Any | None:
    """Score how well each feature marks each category of categorical ``obs`` columns.

    For every feature and category: the AUROC of the feature's activation for
    telling the category's cells from the other cells (0.5: no information, 1: the
    feature is higher in every cell of the category than in any other cell; ties
    at zero count half), the mean activation and the fraction of cells where the
    feature is active. A feature with AUROC near 1 for a cell type "marks" it; one
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
    ``uns[key_added][g]['mean']`` : :class:`numpy.ndarray` (features x categories)
        Mean activation in the category (inactive cells count as 0).
    ``uns[key_added][g]['frac_active']`` : :class:`numpy.ndarray` (features x categories)
        Fraction of the category's cells where the feature is active.
    ``uns[key_added][g]['categories']`` : :class:`numpy.ndarray` of str
        The categories (columns of the matrices).
    ``uns[key_added][g]['n_cells']`` : :class:`numpy.ndarray` of int
        Cells per category.
    ``uns[key_added]['params']`` : `dict`
        ``key`` and ``groupby`` (all columns scored under this key).

    Examples
    --------
    >>> scsae.tl.feature_enrichment(adata, "bulk_labels")
    >>> adata.uns["X_sae_enrichment"]["bulk_labels"]["auroc"].shape
    """
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
        results[col] = _enrichment(acts, labels)
    key_added = key_added or f"{key}_enrichment"
    target = adata.copy() if copy else adata
    previous = dict(target.uns.get(key_added, {}))
    done = [str(c) for c in previous.get("params", {}).get("groupby", [])]
    previous.update(results)
    previous["params"] = {"key": key, "groupby": list(dict.fromkeys([*done, *columns]))}
    target.uns[key_added] = previous
    logg.info("    finished", time=start, deep=f"added\n    'uns[{key_added!r}]'")
    return target if copy else None
