"""Plumbing shared by the feature-interpretation tools (feature_genes, link_pathways...).

Where things live:

- the SAE result (``obsm[key]`` activations, ``uns[key]``) sits on the object
  :func:`scsae.tl.sae` was run on (an AnnData, or a MuData for a joint embedding);
- gene-aligned results (``varm``) sit on the object whose ``var`` they index: the
  AnnData itself, one modality of a MuData (``mod=``), or ``.raw`` when the
  expression came from a ``.raw`` with other genes than ``var``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse


def is_mudata(data: Any) -> bool:
    """Whether ``data`` is a :class:`~mudata.MuData` (without importing mudata eagerly)."""
    return hasattr(data, "mod") and hasattr(data, "obsm") and not isinstance(data, AnnData)


def get_sae_result(data: Any, key: str) -> dict:
    """``data.uns[key]`` written by :func:`scsae.tl.sae`, with a helpful error otherwise."""
    if key not in data.obsm or key not in data.uns or "decoder" not in data.uns[key]:
        msg = (
            f"No SAE result under key {key!r} (need obsm[{key!r}] and uns[{key!r}]). "
            f"Run scsae.tl.sae(adata, key_added={key!r}) first; obsm keys: {list(data.obsm.keys())}."
        )
        raise KeyError(msg)
    return data.uns[key]


def get_activations(data: Any, key: str) -> sparse.csc_matrix:
    """Cells x features activations as CSC float64 (column access per feature)."""
    get_sae_result(data, key)
    acts = data.obsm[key]
    if isinstance(acts, pd.DataFrame):
        acts = acts.to_numpy()
    return sparse.csc_matrix(acts, dtype=np.float64)


def feature_names(data: Any, key: str) -> list[str]:
    """Names of the features: ``"0"``, ``"1"``... (string labels for DataFrames and h5ad)."""
    return [str(i) for i in range(data.obsm[key].shape[1])]


def get_modality(data: Any, mod: str | None) -> tuple[AnnData, np.ndarray | None]:
    """The AnnData holding the genes and, for a MuData, its cells' rows in ``data``.

    Returns
    -------
    ``(adata, rows)``; ``rows`` is `None` for an AnnData (all cells, same order).
    """
    if not is_mudata(data):
        if mod is not None:
            msg = f"mod={mod!r} is only for MuData; got {type(data).__name__}. Drop mod=."
            raise ValueError(msg)
        return data, None
    if mod is None:
        msg = (
            f"data is a MuData: pass mod= to choose the modality whose features to link "
            f"(available: {list(data.mod.keys())})."
        )
        raise ValueError(msg)
    if mod not in data.mod:
        msg = f"mod={mod!r} not in the MuData; available: {list(data.mod.keys())}."
        raise KeyError(msg)
    adata = data.mod[mod]
    rows = data.obs_names.get_indexer(adata.obs_names)
    if (rows < 0).any():
        msg = (
            f"{int((rows < 0).sum())} cells of modality {mod!r} are not in the MuData's obs_names; "
            "call mdata.update() first."
        )
        raise ValueError(msg)
    return adata, rows


def gene_store(adata: AnnData, key: str) -> Any:
    """The object whose ``varm`` holds ``key`` (the AnnData or its ``.raw``), or a KeyError."""
    if key in adata.varm:
        return adata
    if adata.raw is not None and key in adata.raw.varm:
        return adata.raw
    msg = (
        f"No gene scores under varm[{key!r}] (nor raw.varm). Run "
        f"scsae.tl.feature_genes(adata, key_added={key!r}) first; varm keys: {list(adata.varm.keys())}."
    )
    raise KeyError(msg)


DOC_KEY = """\
key
    ``key_added`` of :func:`scsae.tl.sae`: activations in ``obsm[key]``, the SAE
    result in ``uns[key]``."""

DOC_MOD = """\
mod
    For a :class:`~mudata.MuData` whose joint embedding the SAE was trained on: the
    modality whose variables to link (``"rna"``, ``"atac"``, ``"prot"``...). Its
    results are written into ``mdata.mod[mod]``. Must be `None` for an AnnData."""


def pathway_frames(adata: Any, key: str = "X_sae_pathways") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scores and q-values of :func:`link_pathways` as features x sources DataFrames.

    The q-values are the calibrated ``qvals`` where present, else decoupler's ``pvals_adj``.
    """
    if key not in adata.uns or "scores" not in adata.uns[key]:
        msg = f"uns[{key!r}] not found; run scsae.tl.link_pathways(adata, net, key_added={key!r}) first."
        raise KeyError(msg)
    res = adata.uns[key]
    sources = [str(s) for s in res["sources"]]
    index = pd.RangeIndex(np.shape(res["scores"])[0], name="feature")
    scores = pd.DataFrame(np.asarray(res["scores"]), index=index, columns=sources)
    q = res["qvals"] if "qvals" in res else res["pvals_adj"]
    pvals = pd.DataFrame(np.asarray(q), index=index, columns=sources)
    return scores, pvals


def enrichment_frames(
    adata: Any, groupby: str, *, key: str = "X_sae_enrichment"
) -> dict[str, pd.DataFrame]:
    """``auroc``, ``purity``, ``mean``, ``frac_active`` of one column: features x categories frames."""
    if key not in adata.uns or groupby not in adata.uns[key]:
        msg = (
            f"uns[{key!r}][{groupby!r}] not found; run "
            f"scsae.tl.feature_enrichment(adata, {groupby!r}, key_added={key!r}) first."
        )
        raise KeyError(msg)
    res = adata.uns[key][groupby]
    cats = [str(c) for c in res["categories"]]
    index = pd.RangeIndex(np.shape(res["auroc"])[0], name="feature")
    return {
        name: pd.DataFrame(np.asarray(res[name]), index=index, columns=cats)
        for name in ("auroc", "purity", "mean", "frac_active")
        if name in res
    }
