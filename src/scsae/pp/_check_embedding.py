"""``pp.check_embedding``: warn about an embedding an SAE would fit badly."""

from __future__ import annotations

from typing import Any

from anndata import AnnData

from .._utils._docs import DOC_ADATA, DOC_USE_REP, doc_params
from .._utils._embedding import embedding_diagnostics, get_embedding


@doc_params(adata=DOC_ADATA, use_rep=DOC_USE_REP)
def check_embedding(
    adata: AnnData,
    *,
    use_rep: str | None = "X_pca",
    layer: str | None = None,
    random_state: int = 0,
) -> dict[str, Any]:
    """Check an embedding before training an SAE on it; warn on each problem found.

    :class:`~scsae.models.SparseAutoencoder` runs the same checks when it is set
    up, so :func:`scsae.tl.sae` warns too. On a seeded sample of at most 20,000
    cells this flags heavy outlier cells (more than 10 RMS distances from the
    mean), a mean far from the origin relative to the spread (more than 10 RMS
    distances: a known cause of mass death of SAE features), more than 1% exactly
    duplicated cells (held-out cells would repeat training cells) and
    near-constant dimensions. ``adata`` is not modified.

    Parameters
    ----------
    {adata}
    {use_rep}
    random_state
        Seed of the sample of cells.

    Returns
    -------
    The measurements: ``n_cells_checked``, ``max_distance``, ``n_outliers``,
    ``mean_offset``, ``duplicate_fraction``, ``constant_dims``.

    Examples
    --------
    >>> import scanpy as sc, scsae
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> scsae.pp.check_embedding(adata, use_rep="X_pca")["n_outliers"]
    0
    """
    emb = get_embedding(adata, use_rep=use_rep, layer=layer)
    emb.check_finite()
    return embedding_diagnostics(emb, random_state=random_state)
