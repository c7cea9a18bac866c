"""``tl.feature_genes``: score every gene (peak, protein) for every SAE feature."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scanpy import logging as logg
from scipy import sparse, stats

from .._utils._docs import doc_params
from .._utils._features import (
    DOC_KEY,
    DOC_MOD,
    get_activations,
    get_modality,
    get_sae_result,
    is_mudata,
)

Method = Literal["auto", "loadings", "association", "decoder"]


def _resolve_loadings(
    adata: AnnData,
    sae_uns: dict,
    loadings: str | np.ndarray | pd.DataFrame | None,
    *,
    n_dims: int,
    joint: bool,
) -> tuple[np.ndarray | None, str | None]:
    """Genes x dims loadings of the embedding, and a name for ``params``."""
    if loadings is None:
        use_rep = sae_uns.get("params", {}).get("use_rep")
        pcs = adata.varm.get("PCs") if not joint else None
        if use_rep == "X_pca" and pcs is not None and np.shape(pcs)[1] == n_dims:
            return np.asarray(pcs, dtype=np.float64), "varm['PCs']"
        return None, None
    if isinstance(loadings, str):
        if loadings not in adata.varm:
            msg = f"loadings={loadings!r} is not in varm; available: {list(adata.varm.keys())}."
            raise KeyError(msg)
        values, name = adata.varm[loadings], f"varm[{loadings!r}]"
        if isinstance(values, pd.DataFrame):
            values = values.to_numpy()
    elif isinstance(loadings, pd.DataFrame):
        missing = adata.var_names.difference(loadings.index)
        if len(missing):
            msg = (
                f"{len(missing)} of {adata.n_vars} var_names are missing from the loadings' index "
                f"(e.g. {list(missing[:3])}); index the loadings by adata.var_names."
            )
            raise ValueError(msg)
        values, name = loadings.loc[adata.var_names].to_numpy(), "DataFrame"
    else:
        values, name = loadings, "array"
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (adata.n_vars, n_dims):
        msg = (
            f"loadings have shape {values.shape}; expected genes x embedding dims = "
            f"({adata.n_vars}, {n_dims}) to compose with the SAE decoder."
        )
        raise ValueError(msg)
    return values, name


def _expression(
    adata: AnnData, layer: str | None, *, use_raw: bool | None
) -> tuple[Any, pd.Index, bool, str]:
    """Cells x genes log-expression to test, its genes, whether it is ``.raw``, its name."""
    if use_raw is None:
        use_raw = layer is None and adata.raw is not None
    if use_raw:
        if layer is not None:
            msg = f"Pass layer={layer!r} or use_raw=True, not both."
            raise ValueError(msg)
        if adata.raw is None:
            msg = "use_raw=True but adata.raw is None; pass layer= or use_raw=False."
            raise ValueError(msg)
        return adata.raw.X, adata.raw.var_names, True, "raw.X"
    if layer is not None:
        if layer not in adata.layers:
            msg = f"layer={layer!r} not found; available layers: {list(adata.layers.keys())}."
            raise KeyError(msg)
        return adata.layers[layer], adata.var_names, False, f"layers[{layer!r}]"
    return adata.X, adata.var_names, False, "X"


def _auto_route(
    genes_ad: AnnData,
    load_name: str | None,
    covered: np.ndarray | None,
    *,
    layer: str | None,
    use_raw: bool | None,
) -> tuple[str, str]:
    """``"loadings"`` only when the embedding is linear in every gene to be scored."""
    if covered is None:
        return "association", "no gene loadings for this embedding"
    raw_genes = use_raw is not False and layer is None and genes_ad.raw is not None
    if raw_genes and not genes_ad.raw.var_names.equals(genes_ad.var_names):
        return "association", f".raw holds {genes_ad.raw.n_vars} genes, {load_name} covers var only"
    if not covered.all():
        return (
            "association",
            f"{load_name} covers {int(covered.sum())} of {covered.size} genes "
            "(e.g. a PCA of highly variable genes)",
        )
    return "loadings", f"{load_name} covers all {covered.size} genes"


def _warn_if_counts(matrix: Any, name: str) -> None:
    block = matrix[: min(500, matrix.shape[0])]
    values = block.data if sparse.issparse(block) else np.asarray(block).ravel()
    if values.size and np.all(np.mod(values, 1) == 0) and values.max() > 30:
        logg.warning(
            f"{name} looks like raw counts; the association test expects log-normalised "
            "expression (sc.pp.normalize_total + sc.pp.log1p, or pass layer=)."
        )


def _top_cells(acts: sparse.csc_matrix, n_top_cells: int | None) -> sparse.csc_matrix:
    """Binary cells x features matrix of each feature's most activated (active) cells."""
    rows, cols = [], []
    for j in range(acts.shape[1]):
        lo, hi = acts.indptr[j], acts.indptr[j + 1]
        vals, idx = acts.data[lo:hi], acts.indices[lo:hi]
        keep = vals > 0
        vals, idx = vals[keep], idx[keep]
        if n_top_cells is not None and idx.size > n_top_cells:
            idx = idx[np.argpartition(-vals, n_top_cells - 1)[:n_top_cells]]
        rows.append(idx)
        cols.append(np.full(idx.size, j))
    r, c = np.concatenate(rows), np.concatenate(cols)
    return sparse.csc_matrix((np.ones(r.size), (r, c)), shape=acts.shape)


def _dense(x: Any) -> np.ndarray:
    return x.toarray() if sparse.issparse(x) else np.asarray(x)


def _as_float(expr: Any) -> Any:
    if sparse.issparse(expr):
        return sparse.csr_matrix(expr, dtype=np.float64)
    return np.asarray(expr, dtype=np.float64)


def expressed_genes(expr: Any) -> np.ndarray:
    """Genes that vary across cells: the universe of the association route.

    A gene constant over every cell (e.g. never detected) carries no information on
    any feature; it is left out (NaN score), not given a score of 0.
    """
    expr = _as_float(expr)
    mean = np.asarray(expr.mean(axis=0)).ravel()
    sq = expr.multiply(expr) if sparse.issparse(expr) else expr**2
    var = np.asarray(sq.mean(axis=0)).ravel() - mean**2
    return var > 1e-12 * np.maximum(mean**2, 1.0)


def association(
    acts: sparse.csc_matrix,
    expr: Any,
    *,
    n_top_cells: int | None,
    min_cells: int,
    statistic: str,
    chunk_size: int,
    universe: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Welch t (or SMD) of top-activating vs non-activating cells, all features at once.

    Group sums come from sparse products ``groups.T @ expr``, so the cost is one pass
    over the expression per chunk of features, whatever the number of cells tested;
    the test itself is :func:`scipy.stats.ttest_ind_from_stats`. Genes outside
    ``universe`` get NaN.

    Returns
    -------
    ``(scores, pvals, n_top, tested)``; scores and p-values are genes x features.
    """
    expr = _as_float(expr)[:, universe]
    expr2 = expr.multiply(expr).tocsr() if sparse.issparse(expr) else expr**2
    n_cells = expr.shape[0]
    total = np.asarray(expr.sum(axis=0)).ravel()
    total2 = np.asarray(expr2.sum(axis=0)).ravel()
    top = _top_cells(acts, n_top_cells)
    active = (acts > 0).astype(np.float64).tocsc()
    n1_all = np.asarray(top.sum(axis=0)).ravel()
    n0_all = n_cells - np.asarray(active.sum(axis=0)).ravel()
    tested = (n1_all >= min_cells) & (n0_all >= min_cells)

    n_feat = acts.shape[1]
    scores = np.full((universe.size, n_feat), np.nan, dtype=np.float32)
    pvals = np.full((universe.size, n_feat), np.nan, dtype=np.float64)
    scores[universe], pvals[universe] = 0.0, 1.0
    for start in range(0, n_feat, chunk_size):
        sl = slice(start, min(start + chunk_size, n_feat))
        if not tested[sl].any():
            continue
        top_t, act_t = top[:, sl].T.tocsr(), active[:, sl].T.tocsr()
        s1, q1 = _dense(top_t @ expr), _dense(top_t @ expr2)
        sa, qa = _dense(act_t @ expr), _dense(act_t @ expr2)
        n1 = np.maximum(n1_all[sl], 2)[:, None]
        n0 = np.maximum(n0_all[sl], 2)[:, None]
        m1, m0 = s1 / n1, (total - sa) / n0
        v1 = np.clip((q1 - n1 * m1**2) / (n1 - 1), 0, None)
        v0 = np.clip((total2 - qa - n0 * m0**2) / (n0 - 1), 0, None)
        with np.errstate(invalid="ignore", divide="ignore"):
            t, p = stats.ttest_ind_from_stats(
                m1, np.sqrt(v1), n1, m0, np.sqrt(v0), n0, equal_var=False
            )
        # no spread in either group: no evidence either way
        t, p = np.nan_to_num(t, nan=0.0, posinf=0.0, neginf=0.0), np.nan_to_num(p, nan=1.0)
        if statistic == "smd":
            pooled = np.sqrt((v1 + v0) / 2)
            score = np.divide(m1 - m0, pooled, out=np.zeros_like(pooled), where=pooled > 0)
        else:
            score = t
        keep = ~tested[sl]
        score[keep], p[keep] = 0.0, 1.0
        scores[universe, sl] = score.T
        pvals[universe, sl] = p.T
    return scores, pvals, n1_all.astype(np.int64), tested


def null_gene_scores(
    adata: Any, genes_key: str, *, mod: str | None, n_perm: int, random_state: int
) -> Iterator[np.ndarray]:
    """Gene scores of ``n_perm`` null versions of the features, made the way the real ones were.

    ``"decoder"``: each feature gets the scores of a random latent direction decoded
    the same way (stored by :func:`~scsae.tl.decode_features`).
    ``"association"``: the activations are permuted across cells (one permutation for
    all features, so each keeps its number of active and top cells) and associated
    with the same expression. ``"loadings"``: each feature's decoder direction is
    replaced by a random direction of the embedding. Either way a null feature is
    unrelated to the genes while its gene scores keep the genes' correlation.

    Yields
    ------
    Genes x features float arrays (NaN outside the universe), one per permutation.
    """
    genes_ad, rows = get_modality(adata, mod)
    params = genes_ad.uns[genes_key]["params"]
    sae_uns = get_sae_result(adata, params["key"])
    rng = np.random.default_rng(random_state)
    if params["method"] == "decoder":
        yield from _decoder_null(genes_ad, genes_key, sae_uns, n_perm, rng)
        return
    if params["method"] == "loadings":
        load = _stored_loadings(genes_ad, sae_uns, params)
        n_feat, n_dims = np.shape(sae_uns["decoder"])
        for _ in range(n_perm):
            directions = rng.normal(size=(n_feat, n_dims))
            directions /= np.linalg.norm(directions, axis=1, keepdims=True)
            yield load @ directions.T
        return
    expr, _genes, _raw, _name = _expression(
        genes_ad, params.get("layer") or None, use_raw=params["source"] == "raw.X"
    )
    acts = get_activations(adata, params["key"])
    if rows is not None:
        acts = acts[rows]
    universe = np.asarray(
        genes_ad.uns[genes_key].get("universe", expressed_genes(expr)), dtype=bool
    )
    n_top = None if params["n_top_cells"] < 0 else int(params["n_top_cells"])
    acts = acts.tocsr()
    for _ in range(n_perm):
        perm = acts[rng.permutation(acts.shape[0])].tocsc()
        yield association(
            perm,
            expr,
            n_top_cells=n_top,
            min_cells=int(params["min_cells"]),
            statistic=params["statistic"],
            chunk_size=256,
            universe=universe,
        )[0]


def _decoder_null(
    genes_ad: AnnData, genes_key: str, sae_uns: dict, n_perm: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """Null features of the decoder route: random decoded directions, drawn per feature."""
    null_key = genes_key + "_null"
    if null_key not in genes_ad.varm:
        msg = (
            f"varm[{null_key!r}] is missing: run decode_features with n_null > 0 for "
            "calibrated q-values, or pass n_perm=0 to link_pathways."
        )
        raise KeyError(msg)
    null = np.asarray(genes_ad.varm[null_key], dtype=np.float64)
    n_feat = np.shape(sae_uns["decoder"])[0]
    for _ in range(n_perm):
        yield null[:, rng.integers(null.shape[1], size=n_feat)]


def _stored_loadings(genes_ad: AnnData, sae_uns: dict, params: dict) -> np.ndarray:
    """The loadings a ``"loadings"`` result was made from (NaN outside its universe)."""
    source = params["source"]
    if not source.startswith("varm["):
        msg = (
            f"the null of a loadings route needs loadings stored in varm; this result used "
            f"{source}. Store them in varm and pass loadings='<key>' to feature_genes."
        )
        raise ValueError(msg)
    load = np.asarray(genes_ad.varm[source[6:-2]], dtype=np.float64)
    covered = _covered(load)
    return np.where(covered[:, None], load, np.nan)


def _covered(load: np.ndarray) -> np.ndarray:
    """Genes with loadings: finite and not all zero (scanpy writes zeros for non-HVGs)."""
    return np.isfinite(load).all(axis=1) & (np.abs(np.nan_to_num(load)).sum(axis=1) > 0)


@doc_params(key=DOC_KEY, mod=DOC_MOD)
def feature_genes(
    adata: Any,
    *,
    key: str = "X_sae",
    method: Method = "auto",
    loadings: str | np.ndarray | pd.DataFrame | None = None,
    layer: str | None = None,
    use_raw: bool | None = None,
    mod: str | None = None,
    n_top_cells: int | None = None,
    min_cells: int = 5,
    statistic: Literal["t", "smd"] = "t",
    chunk_size: int = 256,
    key_added: str | None = None,
    copy: bool = False,
    model: Any = None,
) -> Any | None:
    """Score every gene for every SAE feature, over an explicit gene universe.

    Three routes:

    ``"loadings"``
        When the embedding is linear in the genes (PCA with ``varm['PCs']``, or a
        linear decoder such as LDVAE or MOFA weights passed as ``loadings``), a
        feature's gene scores are its decoder direction mapped to genes,
        ``loadings @ decoder.T``: the change in (scaled) expression the feature
        adds to a cell. No p-values. Only genes with loadings are scored: a PCA of
        highly variable genes leaves the other genes out of the universe (NaN),
        they do not score 0.
    ``"association"``
        For any embedding (scVI, totalVI, MOFA, WNN, a PCA of some genes...): each
        feature's active cells (or its ``n_top_cells`` most activated) are compared
        with the cells where it is inactive, gene by gene, on log-normalised expression (Welch's t test,
        :func:`scipy.stats.ttest_ind_from_stats`, or the standardised mean
        difference as score). All features are tested at once through sparse group
        sums, with two-sided p-values and Benjamini-Hochberg adjustment
        (:func:`scipy.stats.false_discovery_control`) over the genes of each
        feature. The universe is every gene that varies across cells. The cells
        were selected by activations computed from the same expression, so these
        p-values rank genes; they are not calibrated tests (the pathway q-values of
        :func:`~scsae.tl.link_pathways` are).

    ``"decoder"``
        For the latent of an scvi-tools model (``model=``): each feature's decoder
        row is added to cells' latents and decoded; scores are log2 fold changes
        (:func:`~scsae.tl.decode_features`).

    ``"auto"`` (default) takes ``"loadings"`` only when the loadings (``loadings=``,
    or ``varm['PCs']`` for an SAE trained on ``X_pca``) cover every gene to be
    scored, and ``"association"`` otherwise; the log and ``params['route_reason']``
    say which route ran and why.

    Parameters
    ----------
    adata
        AnnData (or MuData, with ``mod``) processed by :func:`scsae.tl.sae`.
    {key}
    method
        ``"auto"``, ``"loadings"``, ``"association"`` or ``"decoder"``.
    loadings
        Genes x embedding-dims loadings for the ``"loadings"`` route: a ``varm`` key,
        an array or a DataFrame indexed by gene. `None` uses ``varm['PCs']`` when the
        SAE was trained on ``X_pca``. Rows that are all zero or not finite mean "no
        loading" (scanpy writes zeros for genes left out of the PCA).
    layer
        Layer of log-normalised expression for ``"association"``.
    use_raw
        Test ``.raw`` (log-normalised, as scanpy keeps it). `None`: use ``.raw`` when
        present and no ``layer`` is given, as :func:`scanpy.tl.rank_genes_groups`.
    {mod}
    n_top_cells
        Cells per feature in the "active" group. `None` (default): every cell where
        the feature is active, against the cells where it is off: the split the SAE
        itself makes. An integer keeps only the feature's ``n_top_cells`` most
        activated cells (fewer when it is active in fewer), which sharpens the genes
        of a feature that mixes cell types at weak activations but costs power on a
        broad state: on Papalexi et al. 2021 (20,729 cells), the feature lowest in
        the IFN-gamma pathway knockouts links to the interferon-gamma Hallmark set
        at calibrated q < 0.05 in 5 of 5 seeds with all active cells, in 2 of 5 with
        the 100 most activated (``benchmarks/pathways_papalexi.py``). On
        ``pbmc68k_reduced`` the four cell types are found either way with a
        64-feature SAE (tested); with the SAE defaults (seed 0) the CD14+ monocyte
        feature keeps FCN1 but loses CST3 from its top 20 genes with all active
        cells (a mixed-monocyte feature), where ``n_top_cells=100`` keeps both.
    min_cells
        Features active in fewer cells (or inactive in fewer cells) are not tested:
        score 0, p-value 1, ``tested`` False. They are kept, never dropped.
    statistic
        Score of the ``"association"`` route: ``"t"`` (Welch's t, default) or
        ``"smd"`` (mean difference over the pooled standard deviation). P-values
        come from the t test either way.
    chunk_size
        Features per block (bounds memory to ``chunk_size x n_genes`` floats).
    key_added
        Base key of the results; default ``key + '_genes'``.
    copy
        Return a modified copy instead of writing into ``adata``.
    model
        ``method="decoder"``: the trained scvi-tools model whose latent the SAE was
        trained on; scores come from :func:`~scsae.tl.decode_features`.

    Returns
    -------
    `None`, or the copy when ``copy=True``. Sets (on ``mdata.mod[mod]`` for a MuData;
    on ``adata.raw`` for the ``varm`` fields when ``.raw`` with other genes than
    ``var`` was tested):

    ``varm[key_added]`` : :class:`numpy.ndarray` (genes x features, float32)
        Gene scores (composed loadings, t statistic or SMD); NaN outside the universe.
    ``varm[key_added + '_pvals']`` : :class:`numpy.ndarray` (genes x features)
        ``"association"`` only: two-sided p-values (NaN outside the universe).
    ``varm[key_added + '_pvals_adj']`` : :class:`numpy.ndarray` (genes x features)
        ``"association"`` only: Benjamini-Hochberg adjusted p-values (per feature,
        over the universe).
    ``uns[key_added]['universe']`` : :class:`numpy.ndarray` of bool (genes)
        The genes that have a real score.
    ``uns[key_added]['params']`` : `dict`
        ``key``, ``method`` (the route that ran), ``route_reason``, ``source``
        (loadings or expression used), ``mod``, ``n_genes``, ``n_universe`` (genes in
        the universe), ``varm_on`` (``"var"`` or ``"raw"``) and, for
        ``"association"``, ``layer``, ``n_top_cells``, ``min_cells``, ``statistic``.
    ``uns[key_added]['n_cells_top']`` : :class:`numpy.ndarray` (features)
        ``"association"`` only: cells in each feature's top group.
    ``uns[key_added]['tested']`` : :class:`numpy.ndarray` of bool (features)
        Whether each feature has scores (``"loadings"``: all True).

    Examples
    --------
    >>> import scanpy as sc, scsae
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> scsae.tl.sae(adata)
    >>> scsae.tl.feature_genes(adata)  # PCA of 309 HVGs: association over all 765 genes
    >>> adata.uns["X_sae_genes"]["params"]["method"]
    'association'
    """
    if method == "decoder":  # third route: through the embedding's generative model
        from ._decode import decode_features

        return decode_features(adata, model, key=key, key_added=key_added, copy=copy)
    if method not in ("auto", "loadings", "association"):
        msg = f"method={method!r}; choose 'auto', 'loadings', 'association' or 'decoder'."
        raise ValueError(msg)
    if statistic not in ("t", "smd"):
        msg = f"statistic={statistic!r}; choose 't' or 'smd'."
        raise ValueError(msg)
    if n_top_cells is not None and n_top_cells < 2:
        msg = f"n_top_cells={n_top_cells}; need at least 2 cells (or None for all active cells)."
        raise ValueError(msg)
    key_added = key_added or f"{key}_genes"
    sae_uns = get_sae_result(adata, key)
    genes_ad, rows = get_modality(adata, mod)
    decoder = np.asarray(sae_uns["decoder"], dtype=np.float64)
    load, load_name = _resolve_loadings(
        genes_ad, sae_uns, loadings, n_dims=decoder.shape[1], joint=is_mudata(adata)
    )
    if method == "loadings" and load is None:
        msg = (
            "method='loadings' needs gene loadings of the embedding: train on 'X_pca' with "
            "varm['PCs'] present, or pass loadings= (a varm key or genes x dims array, e.g. "
            "LDVAE/MOFA weights). Otherwise use method='association'."
        )
        raise ValueError(msg)
    covered = _covered(load) if load is not None else None
    if method == "auto":
        route, why = _auto_route(genes_ad, load_name, covered, layer=layer, use_raw=use_raw)
    else:
        route, why = method, "asked for"

    start = logg.info(f"scoring genes of {decoder.shape[0]} SAE features: {route} route ({why})")
    params: dict[str, Any] = {"key": key, "method": route, "route_reason": why, "mod": mod or ""}
    if route == "loadings":
        if not covered.all():
            logg.warning(
                f"{int((~covered).sum())} of {load.shape[0]} genes have no loadings in "
                f"{load_name} (e.g. genes left out of the PCA); they are left out of the gene "
                "universe (NaN scores). method='association' scores every gene."
            )
        scores = np.full((load.shape[0], decoder.shape[0]), np.nan, dtype=np.float32)
        scores[covered] = load[covered] @ decoder.T
        universe = covered
        pvals = pvals_adj = n_top = None
        tested = np.ones(decoder.shape[0], dtype=bool)
        on_raw = False
        params["source"] = load_name
    else:
        expr, _genes, on_raw, name = _expression(genes_ad, layer, use_raw=use_raw)
        _warn_if_counts(expr, name)
        acts = get_activations(adata, key)
        if rows is not None:
            acts = acts[rows]
        universe = expressed_genes(expr)
        scores, pvals, n_top, tested = association(
            acts,
            expr,
            n_top_cells=n_top_cells,
            min_cells=min_cells,
            statistic=statistic,
            chunk_size=chunk_size,
            universe=universe,
        )
        pvals_adj = np.full_like(pvals, np.nan)
        pvals_adj[universe] = stats.false_discovery_control(pvals[universe], axis=0)
        pvals_adj[:, ~tested] = np.where(universe[:, None], 1.0, np.nan)
        pvals, pvals_adj = pvals.astype(np.float32), pvals_adj.astype(np.float32)
        params |= {
            "source": name,
            "layer": layer or "",
            "n_top_cells": -1 if n_top_cells is None else int(n_top_cells),
            "min_cells": int(min_cells),
            "statistic": statistic,
        }
        if (~tested).any():
            logg.warning(
                f"{int((~tested).sum())} features active in < {min_cells} cells were not tested."
            )
    params["n_genes"] = int(universe.size)
    params["n_universe"] = int(universe.sum())
    params["varm_on"] = "raw" if on_raw else "var"

    # everything computed: now write
    target = adata.copy() if copy else adata
    target_ad = get_modality(target, mod)[0]
    store = target_ad.raw if on_raw else target_ad
    if on_raw and target_ad.raw.var_names.equals(target_ad.var_names):
        store, params["varm_on"] = target_ad, "var"
    store.varm[key_added] = scores
    for suffix, values in (("_pvals", pvals), ("_pvals_adj", pvals_adj)):
        if values is not None:
            store.varm[key_added + suffix] = values
        elif key_added + suffix in store.varm:  # stale results of another route
            del store.varm[key_added + suffix]
    target_ad.uns[key_added] = {"params": params, "tested": tested, "universe": universe}
    if n_top is not None:
        target_ad.uns[key_added]["n_cells_top"] = n_top
    where = "raw.varm" if params["varm_on"] == "raw" else "varm"
    logg.info(
        "    finished",
        time=start,
        deep=f"added\n    '{where}[{key_added!r}]' (+ '_pvals', '_pvals_adj'), 'uns[{key_added!r}]'",
    )
    return target if copy else None
