"""``tl.feature_table``: one readable row per SAE feature."""

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


def _top_genes(scores: np.ndarray, genes: np.ndarray, n: int, *, sign: int) -> list[str]:
    """Comma-joined top ``n`` genes of each feature (``sign`` 1: highest, -1: lowest)."""
    out = []
    for col in scores.T:
        order = np.argsort(-sign * col, kind="stable")[:n]
        order = order[sign * col[order] > 0]
        out.append(", ".join(genes[order]))
    return out


def _short(name: str) -> str:
    return name.removeprefix("HALLMARK_").removeprefix("REACTOME_").removeprefix("KEGG_")


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
    min_auroc: float = 0.8,
) -> pd.DataFrame:
    """A tidy table with one row per feature: what it is active in, its genes, pathways, label.

    Reads whatever :func:`scsae.tl.sae`, :func:`~scsae.tl.feature_genes`,
    :func:`~scsae.tl.link_pathways` and :func:`~scsae.tl.feature_enrichment` wrote;
    columns of steps that were not run are left out. Write it out with
    ``df.to_csv("features.csv")``.

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
        Adjusted p-value below which the top pathway enters the label.
    min_auroc
        AUROC from which the best category enters the label.

    Returns
    -------
    :class:`pandas.DataFrame` indexed by feature (``"0"``, ``"1"``...) with columns

    ``frequency``, ``n_cells``
        Fraction and number of cells where the feature is active.
    ``mean_activation``, ``max_activation``
        Mean over the cells where it is active, and maximum.
    ``stability``, ``stable``
        After :func:`~scsae.tl.feature_stability`: lowest cosine with its match in
        the other seeds, and whether that reaches the threshold (unstable: `False`).
    ``top_genes_up``, ``top_genes_down``
        Highest and lowest scoring genes (positive / negative scores only).
    ``top_pathway``, ``pathway_score``, ``pathway_padj``
        Highest scoring source of :func:`~scsae.tl.link_pathways`.
    ``best_obs``, ``best_category``, ``auroc``
        The ``obs`` column and category the feature marks best (highest AUROC).
    ``low_obs``, ``low_category``, ``low_auroc``
        The category where the feature is most depleted (lowest AUROC), e.g. the
        knockouts that switch a pathway's feature off in a perturbation screen.
    ``label``
        Short automatic label: ``"dead"``, or the best category (when AUROC >=
        ``min_auroc``), the top 3 genes and the top pathway (when significant and
        positive), joined by ``" | "``.

    Examples
    --------
    >>> df = scsae.tl.feature_table(adata)
    >>> df.sort_values("auroc", ascending=False).head()
    >>> df.to_csv("features.csv")
    """
    acts = get_activations(adata, key)
    n_feat = acts.shape[1]
    index = pd.Index([str(i) for i in range(n_feat)], name="feature")
    n_cells = np.diff(acts.indptr)
    active_sum = np.asarray(acts.sum(axis=0)).ravel()
    table = pd.DataFrame(index=index)
    table["frequency"] = n_cells / acts.shape[0]
    table["n_cells"] = n_cells
    with np.errstate(invalid="ignore", divide="ignore"):
        table["mean_activation"] = np.where(n_cells > 0, active_sum / n_cells, 0.0)
    table["max_activation"] = np.asarray(acts.max(axis=0).todense()).ravel()
    stability = adata.uns[key].get("stability")  # written by scsae.tl.feature_stability
    if stability is not None:
        table["stability"] = np.asarray(stability["stability"])
        table["stable"] = np.asarray(stability["stable"], dtype=bool)

    genes_ad, _ = get_modality(adata, mod)
    genes_key = genes_key or f"{key}_genes"
    try:
        store = gene_store(genes_ad, genes_key)
    except KeyError:
        store = None
    if store is not None:
        scores = np.nan_to_num(np.asarray(store.varm[genes_key], dtype=np.float64))
        names = np.asarray(store.var_names.astype(str))
        table["top_genes_up"] = _top_genes(scores, names, n_genes, sign=1)
        table["top_genes_down"] = _top_genes(scores, names, n_genes, sign=-1)

    pathways_key = pathways_key or f"{key}_pathways"
    if pathways_key in genes_ad.uns:
        pscores, padj = pathway_frames(genes_ad, pathways_key)
        filled = pscores.fillna(-np.inf)
        best = filled.to_numpy().argmax(axis=1)
        rows = np.arange(n_feat)
        valid = np.isfinite(filled.to_numpy()[rows, best])
        table["top_pathway"] = np.where(valid, pscores.columns.to_numpy()[best], "")
        table["pathway_score"] = np.where(valid, pscores.to_numpy()[rows, best], np.nan)
        table["pathway_padj"] = np.where(valid, padj.to_numpy()[rows, best], np.nan)

    enrichment_key = enrichment_key or f"{key}_enrichment"
    if enrichment_key in adata.uns:
        best_auc = np.full(n_feat, -np.inf)
        best_obs = np.full(n_feat, "", dtype=object)
        best_cat = np.full(n_feat, "", dtype=object)
        low_auc = np.full(n_feat, np.inf)
        low_obs = np.full(n_feat, "", dtype=object)
        low_cat = np.full(n_feat, "", dtype=object)
        rows = np.arange(n_feat)
        for col in adata.uns[enrichment_key]["params"]["groupby"]:
            auc = enrichment_frames(adata, str(col), key=enrichment_key)["auroc"]
            cats = auc.columns.to_numpy()
            values = auc.fillna(-np.inf).to_numpy()
            j = values.argmax(axis=1)
            v = values[rows, j]
            better = v > best_auc
            best_auc[better], best_obs[better], best_cat[better] = (
                v[better],
                str(col),
                cats[j][better],
            )
            values = auc.fillna(np.inf).to_numpy()
            j = values.argmin(axis=1)
            v = values[rows, j]
            lower = v < low_auc
            low_auc[lower], low_obs[lower], low_cat[lower] = v[lower], str(col), cats[j][lower]
        table["best_obs"] = best_obs
        table["best_category"] = best_cat
        table["auroc"] = np.where(np.isfinite(best_auc), best_auc, np.nan)
        table["low_obs"] = low_obs
        table["low_category"] = low_cat
        table["low_auroc"] = np.where(np.isfinite(low_auc), low_auc, np.nan)

    single_obs = "best_obs" in table and table["best_obs"].replace("", np.nan).nunique() <= 1
    labels = []
    for feat, row in table.iterrows():
        if row["n_cells"] == 0:
            labels.append("dead")
            continue
        parts = []
        if "auroc" in table and row["auroc"] >= min_auroc:
            cat = row["best_category"]
            parts.append(cat if single_obs else f"{row['best_obs']}: {cat}")
        if "top_genes_up" in table and row["top_genes_up"]:
            parts.append(" ".join(row["top_genes_up"].split(", ")[:3]))
        if (
            "top_pathway" in table
            and row["top_pathway"]
            and row["pathway_padj"] < alpha
            and row["pathway_score"] > 0
        ):
            parts.append(_short(row["top_pathway"]))
        labels.append(" | ".join(parts) if parts else f"feature {feat}")
    table["label"] = labels
    return table
