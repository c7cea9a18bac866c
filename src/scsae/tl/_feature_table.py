"""``tl.feature_table``: one readable row per SAE feature, with specific, calibrated labels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .._utils._docs import doc_params
from .._utils._features import (
    DOC_KEY,
    DOC_MOD,
    enrichment_frames,
    gene_store,
    get_activations,
    get_modality,
    pathway_frames,
)

#: thresholds of the cell-type label, chosen on pbmc68k_reduced (bulk_labels, louvain)
#: and on simulated cell types (docs/biology.md): specific = AUROC, pure = share of
#: the feature's top cells in the type
MIN_AUROC = 0.8
MIN_PURITY = 0.7
#: no gene may name more than this share of the labelled features
MAX_LABEL_SHARE = 0.1


def _mean_over_features(x: np.ndarray, axis: int) -> np.ndarray:
    """Mean of the finite values along ``axis`` (0 where there are none), kept as a column."""
    finite = np.isfinite(x)
    total = np.where(finite, x, 0.0).sum(axis=axis, keepdims=True)
    return total / np.maximum(finite.sum(axis=axis, keepdims=True), 1)


def _top_genes(scores: np.ndarray, genes: np.ndarray, n: int, *, sign: int) -> list[str]:
    """Comma-joined top ``n`` genes of each feature (``sign`` 1: highest, -1: lowest)."""
    out = []
    for col in np.nan_to_num(scores).T:
        order = np.argsort(-sign * col, kind="stable")[:n]
        order = order[sign * col[order] > 0]
        out.append(", ".join(genes[order]))
    return out


def specific_genes(
    scores: np.ndarray, live: np.ndarray, genes: np.ndarray, n: int, *, max_share: float
) -> list[str]:
    """Genes particular to each feature: score against the gene's mean over the features.

    A gene (PTPRCAP, a ribosomal protein...) that scores high in many features is
    down-weighted by its mean score over the live features; and a gene may only name
    the ``max_share`` of live features where it is most specific, so that no gene
    appears in more than that share of the labels.
    """
    x = np.where(np.isfinite(scores), scores, np.nan)[:, live]
    spec = x - _mean_over_features(x, axis=1)
    spec = np.where(np.isfinite(spec) & (np.nan_to_num(x) > 0), spec, -np.inf)
    cap = max(1, int(np.floor(max_share * live.sum())))
    # rank of each feature among all live features, per gene (0 = most specific)
    rank = np.argsort(np.argsort(-spec, axis=1, kind="stable"), axis=1, kind="stable")
    spec = np.where(rank < cap, spec, -np.inf)
    out = [""] * live.size
    for col, j in zip(spec.T, np.flatnonzero(live), strict=True):
        order = np.argsort(-col, kind="stable")[:n]
        out[j] = " ".join(genes[order[np.isfinite(col[order]) & (col[order] > 0)]])
    return out


def _short(name: str) -> str:
    return name.removeprefix("HALLMARK_").removeprefix("REACTOME_").removeprefix("KEGG_")


def _pathways(table: pd.DataFrame, genes_ad: Any, key: str, alpha: float) -> None:
    """Top pathway by score, and the most specific significant one for the label."""
    res = genes_ad.uns[key]
    scores, padj = pathway_frames(genes_ad, key)
    z = np.asarray(res["zscores"], dtype=np.float64) if "zscores" in res else scores.to_numpy()
    q = padj.to_numpy(dtype=np.float64)
    names = scores.columns.to_numpy()
    rows = np.arange(len(table))
    filled = np.nan_to_num(z, nan=-np.inf)
    best = filled.argmax(axis=1)
    valid = np.isfinite(filled[rows, best])
    table["top_pathway"] = np.where(valid, names[best], "")
    table["pathway_score"] = np.where(valid, scores.to_numpy()[rows, best], np.nan)
    table["pathway_q"] = np.where(valid, q[rows, best], np.nan)
    # specific: z against the set's mean z over features, among significant positive sets
    spec = z - _mean_over_features(z, axis=0)
    spec = np.where((np.nan_to_num(q, nan=1.0) < alpha) & (np.nan_to_num(z) > 0), spec, -np.inf)
    pick = spec.argmax(axis=1)
    ok = np.isfinite(spec[rows, pick])
    table["specific_pathway"] = np.where(ok, names[pick], "")


def _cell_types(
    table: pd.DataFrame, adata: Any, key: str, *, min_auroc: float, min_purity: float
) -> None:
    """Best and lowest categories, and the cell-type part of the label."""
    n_feat = len(table)
    rows = np.arange(n_feat)
    best = {"auc": np.full(n_feat, -np.inf), "obs": [""] * n_feat, "cat": [""] * n_feat}
    low = {"auc": np.full(n_feat, np.inf), "obs": [""] * n_feat, "cat": [""] * n_feat}
    purity_best = np.full(n_feat, np.nan)
    # the label: specific and pure -> "<type>"; pure only -> "subset of <type>"
    kind = np.zeros(n_feat)  # 2: type, 1: subset
    kind_score = np.full(n_feat, -np.inf)
    kind_label = np.full(n_feat, "", dtype=object)
    columns = [str(c) for c in adata.uns[key]["params"]["groupby"]]
    for col in columns:
        frames = enrichment_frames(adata, col, key=key)
        auc = frames["auroc"].to_numpy(dtype=np.float64)
        pur = frames["purity"].to_numpy(dtype=np.float64) if "purity" in frames else None
        cats = frames["auroc"].columns.to_numpy()
        prefix = "" if len(columns) == 1 else f"{col}: "
        a = np.nan_to_num(auc, nan=-np.inf)
        j = a.argmax(axis=1)
        better = a[rows, j] > best["auc"]
        for i in np.flatnonzero(better):
            best["auc"][i], best["obs"][i], best["cat"][i] = a[i, j[i]], col, cats[j[i]]
            purity_best[i] = np.nan if pur is None else pur[i, j[i]]
        a = np.nan_to_num(auc, nan=np.inf)
        j = a.argmin(axis=1)
        for i in np.flatnonzero(a[rows, j] < low["auc"]):
            low["auc"][i], low["obs"][i], low["cat"][i] = a[i, j[i]], col, cats[j[i]]
        if pur is None:
            continue
        pure = np.nan_to_num(pur) >= min_purity
        for level, ok in ((2, pure & (np.nan_to_num(auc) >= min_auroc)), (1, pure)):
            score = np.where(ok, np.nan_to_num(auc) + np.nan_to_num(pur), -np.inf)
            j = score.argmax(axis=1)
            take = np.isfinite(score[rows, j]) & (
                (level > kind) | ((level == kind) & (score[rows, j] > kind_score))
            )
            for i in np.flatnonzero(take):
                kind[i], kind_score[i] = level, score[i, j[i]]
                text = f"{prefix}{cats[j[i]]}"
                kind_label[i] = text if level == 2 else f"subset of {text}"
    table["best_obs"] = best["obs"]
    table["best_category"] = best["cat"]
    table["auroc"] = np.where(np.isfinite(best["auc"]), best["auc"], np.nan)
    table["purity"] = purity_best
    table["low_obs"] = low["obs"]
    table["low_category"] = low["cat"]
    table["low_auroc"] = np.where(np.isfinite(low["auc"]), low["auc"], np.nan)
    table["cell_type"] = kind_label


@doc_params(key=DOC_KEY, mod=DOC_MOD)
def feature_table(
    adata: Any,
    key: str = "X_sae",
    *,
    mod: str | None = None,
    genes_key: str | None = None,
    pathways_key: str | None = None,
    enrichment_key: str | None = None,
    n_genes: int = 5,
    alpha: float = 0.05,
    min_auroc: float = MIN_AUROC,
    min_purity: float = MIN_PURITY,
    max_label_share: float = MAX_LABEL_SHARE,
) -> pd.DataFrame:
    """A tidy table with one row per feature: what it is active in, its genes, pathways, label.

    Reads whatever :func:`scsae.tl.sae`, :func:`~scsae.tl.feature_genes`,
    :func:`~scsae.tl.link_pathways` and :func:`~scsae.tl.feature_enrichment` wrote;
    columns of steps that were not run are left out. The index is the feature's
    integer index, as the columns of ``obsm[key]``; write it out with
    ``df.to_csv("features.csv")`` (every column is kept).

    The automatic label names what is particular to a feature:

    - cell type: the category of a :func:`~scsae.tl.feature_enrichment` column when
      the feature is specific to it (AUROC >= ``min_auroc``) and pure (share of its
      top cells in the category >= ``min_purity``); ``"subset of <type>"`` when it is
      pure but not specific (it marks part of the type);
    - genes: the top 3 genes by score minus the gene's mean score over the features,
      each gene naming at most ``max_label_share`` of the features;
    - pathway: the set with the highest calibrated z score relative to its mean over
      the features, among those with q < ``alpha`` and a positive z.

    Parameters
    ----------
    adata
        AnnData or MuData processed by :func:`scsae.tl.sae`.
    {key}
    {mod}
    genes_key
        ``key_added`` of :func:`~scsae.tl.feature_genes` (default ``key + '_genes'``).
    pathways_key
        ``key_added`` of :func:`~scsae.tl.link_pathways` (default ``key + '_pathways'``).
    enrichment_key
        ``key_added`` of :func:`~scsae.tl.feature_enrichment` (default ``key + '_enrichment'``).
    n_genes
        Genes listed per direction.
    alpha
        q-value below which a pathway enters the label.
    min_auroc
        AUROC from which a cell type is specific (0.8: chosen on ``pbmc68k_reduced``
        and simulated cell types, see the biology guide).
    min_purity
        Share of the feature's top cells in the type from which it is pure (0.7).
    max_label_share
        Largest share of the labelled features a gene may name.

    Returns
    -------
    :class:`pandas.DataFrame` indexed by feature (``0``, ``1``...: integers) with columns

    ``frequency``, ``n_cells``
        Fraction and number of cells where the feature is active.
    ``mean_activation``, ``max_activation``
        Mean over the cells where it is active, and maximum.
    ``stability``, ``stable``
        After :func:`~scsae.tl.feature_stability`: lowest cosine with its match in
        the other seeds, and whether that reaches the threshold (unstable: `False`).
    ``top_genes_up``, ``top_genes_down``
        Highest and lowest scoring genes (positive / negative scores only).
    ``specific_genes``
        The genes of the label (see above).
    ``top_pathway``, ``pathway_score``, ``pathway_q``
        Source with the highest calibrated z score (the raw score without
        calibration), its decoupler score and its q-value (calibrated ``qvals`` of
        :func:`~scsae.tl.link_pathways`, else decoupler's adjusted p-value).
    ``specific_pathway``
        The pathway of the label ("" when none is significant).
    ``best_obs``, ``best_category``, ``auroc``, ``purity``
        The ``obs`` column and category the feature marks best (highest AUROC), and
        the purity of the feature's top cells for it.
    ``low_obs``, ``low_category``, ``low_auroc``
        The category where the feature is most depleted (lowest AUROC), e.g. the
        knockouts that switch a pathway's feature off in a perturbation screen.
    ``cell_type``
        ``"<type>"``, ``"subset of <type>"`` or ``""`` (see above).
    ``label``
        ``"dead"``, or the cell type, specific genes and pathway joined by ``" | "``.

    Examples
    --------
    >>> df = scsae.tl.feature_table(adata)
    >>> df.loc[2, "label"]
    >>> df.to_csv("features.csv")
    """
    acts = get_activations(adata, key)
    n_feat = acts.shape[1]
    table = pd.DataFrame(index=pd.RangeIndex(n_feat, name="feature"))
    n_cells = np.diff(acts.indptr)
    active_sum = np.asarray(acts.sum(axis=0)).ravel()
    table["frequency"] = n_cells / acts.shape[0]
    table["n_cells"] = n_cells
    with np.errstate(invalid="ignore", divide="ignore"):
        table["mean_activation"] = np.where(n_cells > 0, active_sum / n_cells, 0.0)
    table["max_activation"] = np.asarray(acts.max(axis=0).todense()).ravel()
    stability = adata.uns[key].get("stability")  # written by scsae.tl.feature_stability
    if stability is not None:
        table["stability"] = np.asarray(stability["stability"])
        table["stable"] = np.asarray(stability["stable"], dtype=bool)
    live = n_cells > 0

    genes_ad, _ = get_modality(adata, mod)
    genes_key = genes_key or f"{key}_genes"
    try:
        store = gene_store(genes_ad, genes_key)
    except KeyError:
        store = None
    if store is not None:
        scores = np.asarray(store.varm[genes_key], dtype=np.float64)
        names = np.asarray(store.var_names.astype(str))
        table["top_genes_up"] = _top_genes(scores, names, n_genes, sign=1)
        table["top_genes_down"] = _top_genes(scores, names, n_genes, sign=-1)
        tested = genes_ad.uns.get(genes_key, {}).get("tested", np.ones(n_feat, dtype=bool))
        table["specific_genes"] = specific_genes(
            scores, live & np.asarray(tested, dtype=bool), names, 3, max_share=max_label_share
        )

    pathways_key = pathways_key or f"{key}_pathways"
    if pathways_key in genes_ad.uns:
        _pathways(table, genes_ad, pathways_key, alpha)

    enrichment_key = enrichment_key or f"{key}_enrichment"
    if enrichment_key in adata.uns:
        _cell_types(table, adata, enrichment_key, min_auroc=min_auroc, min_purity=min_purity)

    labels = []
    for feat, row in table.iterrows():
        if row["n_cells"] == 0:
            labels.append("dead")
            continue
        parts = [
            row.get("cell_type", ""),
            row.get("specific_genes", ""),
            _short(row.get("specific_pathway", "")),
        ]
        parts = [p for p in parts if p]
        labels.append(" | ".join(parts) if parts else f"feature {feat}")
    table["label"] = labels
    return table
