"""``tl.link_pathways``: enrichment of gene sets / regulons in every SAE feature (decoupler)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scanpy import logging as logg
from scipy import sparse, special, stats

from .._utils._docs import doc_params
from .._utils._features import (
    DOC_KEY,
    DOC_MOD,
    feature_names,
    gene_store,
    get_modality,
    get_sae_result,
)
from ._feature_genes import null_gene_scores

Net = pd.DataFrame | Mapping[str, Iterable[str]] | str | PathLike


def read_net(net: Net) -> pd.DataFrame:
    """A decoupler network (long ``source``/``target``/``weight`` DataFrame) from any input.

    Parameters
    ----------
    net
        A long DataFrame with ``source`` and ``target`` (and optionally ``weight``)
        columns, as returned by ``decoupler.op.hallmark()``, ``progeny()``,
        ``collectri()`` or ``resource("PanglaoDB")``; a dict of gene sets
        ``{name: [genes]}``; or the path of a GMT file (or of a CSV holding a long
        network).

    Returns
    -------
    The network, duplicates removed, with ``weight`` 1 where none was given.
    """
    if isinstance(net, str | PathLike):
        path = Path(net)
        if not path.exists():
            msg = f"Network file {str(path)!r} does not exist."
            raise FileNotFoundError(msg)
        if path.suffix.lower() in (".csv", ".tsv"):
            df = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",")
        else:
            import decoupler as dc

            df = dc.pp.read_gmt(str(path))
    elif isinstance(net, pd.DataFrame):
        df = net
    elif isinstance(net, Mapping):
        rows = [(str(s), str(g)) for s, genes in net.items() for g in genes]
        df = pd.DataFrame(rows, columns=["source", "target"])
    else:
        msg = (
            f"net must be a DataFrame (source/target/weight), a dict of gene sets or a GMT path; "
            f"got {type(net).__name__}."
        )
        raise TypeError(msg)
    if not {"source", "target"}.issubset(df.columns):
        msg = (
            f"net needs 'source' and 'target' columns; it has {list(df.columns)}. "
            "Rename them, e.g. net.rename(columns={'geneset': 'source', 'genesymbol': 'target'})."
        )
        raise ValueError(msg)
    cols = ["source", "target"] + (["weight"] if "weight" in df.columns else [])
    df = df[cols].astype({"source": str, "target": str}).drop_duplicates(["source", "target"])
    if "weight" not in df.columns:
        df = df.assign(weight=1.0)
    return df.reset_index(drop=True)


def _overlap_error(net: pd.DataFrame, genes: pd.Index, *, has_raw: bool) -> ValueError:
    targets = pd.Index(net["target"].unique())
    ex_genes, ex_targets = list(genes[:3]), list(targets[:3])
    hints = []
    gene_ens = np.mean([str(g).startswith("ENS") for g in genes[:200]]) > 0.5
    target_ens = np.mean([str(t).startswith("ENS") for t in targets[:200]]) > 0.5
    if gene_ens != target_ens:
        hints.append(
            "one side uses Ensembl IDs and the other gene symbols: map them first "
            "(e.g. set var_names to var['gene_symbols'])"
        )
    if len(targets.str.upper().intersection(genes.str.upper())):
        hints.append(
            "names match ignoring case: a species mismatch (mouse 'Cd3e' vs human 'CD3E')? "
            "translate the network, e.g. decoupler.op.translate(net, target_organism=...)"
        )
    if has_raw:
        hints.append(
            "genes were taken from var; score .raw instead (feature_genes(..., use_raw=True))"
        )
    if not hints:
        hints.append("check that the network is for this species and this feature type")
    msg = (
        f"No target of the network is among the {len(genes)} genes scored (e.g. {ex_genes}; "
        f"network targets e.g. {ex_targets}). Hint: " + "; ".join(hints) + "."
    )
    return ValueError(msg)


def _weights(net: pd.DataFrame, genes: pd.Index, sources: np.ndarray) -> sparse.csc_matrix:
    """Genes x sources sparse weight matrix of ``net`` (0 where a gene is not a target)."""
    rows = genes.get_indexer(net["target"])
    cols = pd.Index(sources).get_indexer(net["source"])
    keep = (rows >= 0) & (cols >= 0)
    return sparse.csc_matrix(
        (net["weight"].to_numpy(dtype=np.float64)[keep], (rows[keep], cols[keep])),
        shape=(len(genes), len(sources)),
    )


def _two_sided_t_p(t: np.ndarray, df: int, *, step: float = 2e-4) -> np.ndarray:
    """Two-sided p-values of Student's t for many values sharing one ``df``.

    Student's t tail (an incomplete beta function) costs ~1 s per million values,
    the slowest step at atlas scale (10 million tests). All tests share one ``df``,
    so for large arrays the exact tail is tabulated once on a grid of |t| (spacing
    ``step``) and ``log p`` interpolated linearly: ``log p`` is concave with a
    second derivative of magnitude below 1, so the relative error is below
    ``step**2 / 8`` (5e-9; tested), under the float32 the p-values are stored in.
    """
    a = np.abs(t)
    finite = np.isfinite(a)
    top = float(a[finite].max()) if finite.any() else 0.0
    n_grid = int(np.ceil(top / step)) + 2
    if n_grid * 4 > a.size:  # small problems: the exact tail directly
        return 2 * special.stdtr(df, -a)
    grid = np.linspace(0.0, (n_grid - 1) * step, n_grid)
    log_p = np.log(np.maximum(2 * special.stdtr(df, -grid), np.finfo(np.float64).tiny))
    p = np.full_like(a, np.nan)
    p[finite] = np.exp(np.interp(a[finite], grid, log_p))
    p[np.isposinf(a)] = 0.0
    return p


def _ulm(values: np.ndarray, weights: sparse.csc_matrix) -> tuple[np.ndarray, np.ndarray]:
    """``decoupler.mt.ulm`` computed through a sparse product: t values and BH-adjusted p-values.

    Decoupler's ulm is the t value of the Pearson correlation between a row of
    ``values`` (features x genes) and each source's weights over the genes, with
    ``n_genes - 2`` degrees of freedom. It builds a dense genes x sources
    adjacency (20,000 x 5,000 doubles for an atlas and MSigDB); the same numbers
    come from ``weights.T @ centred values`` with the sparse weights (tested
    equal to decoupler), which is what makes 2,000 features x 5,000 sets fast.
    """
    n = values.shape[1]
    centred = values - values.mean(axis=1, keepdims=True)
    sd_x = np.sqrt(np.einsum("ij,ij->i", centred, centred) / (n - 1))
    w_mean = np.asarray(weights.mean(axis=0)).ravel()
    w_sq = np.asarray(weights.multiply(weights).sum(axis=0)).ravel()
    sd_w = np.sqrt(np.clip((w_sq - n * w_mean**2) / (n - 1), 0, None))
    # sum_g (x_g - mean_x)(w_g - mean_w) = sum_g (x_g - mean_x) w_g: the centred x sum to 0
    r = np.asarray(weights.T @ centred.T).T  # features x sources; in place from here on
    del centred
    with np.errstate(invalid="ignore", divide="ignore"):
        r /= (n - 1) * sd_x[:, None]
        r /= sd_w[None, :]
        # decoupler's t: r * sqrt(df / ((1 - r + eps)(1 + r + eps)))
        t = (1.0 + 2.2e-16) ** 2 - r**2
        np.divide(n - 2, t, out=t)
        np.sqrt(t, out=t)
        t *= r
    del r
    p = _two_sided_t_p(t, n - 2)
    finite = np.isfinite(p)
    rows = finite.all(axis=1)
    if rows.all():
        return t, stats.false_discovery_control(p, axis=1)
    padj = np.full_like(p, np.nan)
    if rows.any():
        padj[rows] = stats.false_discovery_control(p[rows], axis=1)
    for i in np.flatnonzero(~rows & finite.any(axis=1)):
        padj[i, finite[i]] = stats.false_discovery_control(p[i, finite[i]])
    return t, padj


def _run_method(
    dc: Any,
    method: str,
    values: np.ndarray,
    index: np.ndarray,
    genes: pd.Index,
    net: pd.DataFrame,
    sources: np.ndarray,
    weights: sparse.csc_matrix | None = None,
    **kwargs: Any,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Decoupler scores and adjusted p-values, rows of ``values`` (features x genes) x ``sources``."""
    if method == "ulm" and not kwargs and weights is not None:
        return _ulm(values, weights)
    data = pd.DataFrame(values, index=index, columns=genes)
    es, pv = getattr(dc.mt, method)(data, net, tmin=1, empty=False, **kwargs)
    es = es.reindex(index=data.index, columns=sources).to_numpy(dtype=np.float64)
    if pv is None:
        return es, None
    pv = pv.reindex(index=data.index, columns=sources).to_numpy(dtype=np.float64)
    if method == "mlm":  # decoupler leaves mlm p-values unadjusted
        pv = stats.false_discovery_control(np.nan_to_num(pv, nan=1.0), axis=1)
    return es, pv


def _permutation_q(
    es: np.ndarray, null_sum: np.ndarray, null_sq: np.ndarray, n_perm: int
) -> tuple[np.ndarray, np.ndarray]:
    """Z score against the null draws and its two-sided p-value, BH-adjusted over all tests.

    Under the null the real score and the ``n_perm`` null scores are exchangeable;
    with a normal null, ``(x - mean) / (sd * sqrt(1 + 1/n))`` follows Student's t
    with ``n - 1`` degrees of freedom (a prediction interval), which gives the
    p-value without needing thousands of permutations. The adjustment runs over every
    feature and set together: labels and browsers scan all of them.
    """
    mean = null_sum / n_perm
    sd = np.sqrt(np.clip((null_sq - n_perm * mean**2) / (n_perm - 1), 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (es - mean) / sd
    z = np.where(sd > 0, z, np.nan)
    p = 2 * stats.t.sf(np.abs(z) / np.sqrt(1 + 1 / n_perm), df=n_perm - 1)
    q = np.full_like(p, np.nan)
    tested = np.isfinite(p)
    if tested.any():
        q[tested] = stats.false_discovery_control(p[tested])
    return z, q


@doc_params(key=DOC_KEY, mod=DOC_MOD)
def link_pathways(
    adata: Any,
    net: Net,
    *,
    key: str = "X_sae",
    genes_key: str | None = None,
    method: str = "ulm",
    mod: str | None = None,
    tmin: int = 5,
    n_perm: int = 100,
    random_state: int = 0,
    method_kwargs: dict[str, Any] | None = None,
    key_added: str | None = None,
    copy: bool = False,
) -> Any | None:
    """Score every gene set (pathway, regulon, marker set) in every SAE feature.

    Each feature's gene scores from :func:`scsae.tl.feature_genes` form one row of a
    features x genes matrix, on which a :mod:`decoupler` method is run, exactly as
    decoupler scores samples: ``ulm`` (default; t value of a univariate linear model
    of the gene scores on the set's weights), ``mlm``, ``ora`` (over-representation
    of the set among the feature's top genes), ``gsea``, ``aucell``, ``zscore``,
    ``viper``, ``waggr``... All features are scored in one call; ``ulm`` (without
    ``method_kwargs``) is computed through a sparse product of the gene scores with
    the sets' weights, equal to decoupler's (tested) and fast at atlas scale. Features whose gene
    scores are all zero (dead or untested) are kept, with NaN scores, never dropped.

    **Gene universe.** Decoupler sees only the genes of the ``feature_genes``
    universe (``uns[genes_key]['universe']``: genes with a real score); genes outside
    are absent, not zero, so "is this gene highly variable" cannot leak into the
    scores. Sets are pruned to the universe (:func:`decoupler.pp.prune`); the
    number of each set's genes in the universe is reported, with a warning when
    sets lose most of their genes.

    **Calibrated q-values.** Decoupler's p-values treat genes as independent; the
    genes of a pathway are co-expressed, so on random features they call many sets
    significant. ``n_perm`` null features are made the way the real gene scores were
    (:func:`scsae.tl.feature_genes` on activations permuted across cells for the
    association route; random decoder directions for the loadings route), scored by
    the same decoupler method, and each real score is compared with its feature's
    and set's null: ``zscores``, and ``qvals`` adjusted (Benjamini-Hochberg) over
    every feature and set together, since labels and browsers scan them all. On random embeddings and permuted cells, about 5% of features or fewer
    have any set at q < 0.05 (tested).

    Parameters
    ----------
    adata
        AnnData (or MuData with ``mod``) processed by :func:`scsae.tl.feature_genes`.
    net
        A decoupler network (long DataFrame with ``source``, ``target`` and optional
        ``weight``), a dict of gene sets, or a GMT path. Online:
        ``decoupler.op.hallmark()``, ``decoupler.op.progeny()``,
        ``decoupler.op.collectri()``, ``decoupler.op.resource("PanglaoDB")``
        (rename its ``cell_type``/``genesymbol`` columns to ``source``/``target``).
    {key}
    genes_key
        ``key_added`` of :func:`scsae.tl.feature_genes` (default ``key + '_genes'``).
    method
        Name of a method in ``decoupler.mt`` (``"ulm"``, ``"mlm"``, ``"ora"``,
        ``"gsea"``, ``"aucell"``, ``"zscore"``, ``"viper"``, ``"waggr"``...).
    {mod}
    tmin
        Minimum targets of a source within the gene universe; smaller sources are
        left out (their number is logged and kept in ``params``).
    n_perm
        Null rounds for the calibrated q-values (each one ``feature_genes`` pass and
        one decoupler call); ``0`` skips them (no ``zscores``/``qvals``).
    random_state
        Seed of the null rounds.
    method_kwargs
        Further options of the decoupler method (e.g. ``{{"n_up": 50}}`` for ``ora``,
        ``{{"times": 100}}`` for ``gsea``).
    key_added
        Key in ``uns``; default ``key + '_pathways'``.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    `None`, or the copy when ``copy=True``. Sets (on ``mdata.mod[mod]`` for a MuData):

    ``uns[key_added]['scores']`` : :class:`numpy.ndarray` (features x sources, float32)
        Decoupler's enrichment scores (NaN for empty features).
    ``uns[key_added]['pvals_adj']`` : :class:`numpy.ndarray` (features x sources)
        Decoupler's Benjamini-Hochberg adjusted p-values across the sources of each
        feature (``mlm``: adjusted here the same way); NaN for methods without a test
        (``aucell``) and for empty features. Not calibrated: use ``qvals``.
    ``uns[key_added]['zscores']`` : :class:`numpy.ndarray` (features x sources)
        ``n_perm > 0``: score minus the null mean, over the null standard deviation.
    ``uns[key_added]['qvals']`` : :class:`numpy.ndarray` (features x sources)
        ``n_perm > 0``: permutation p-values, Benjamini-Hochberg adjusted over all
        features and sources.
    ``uns[key_added]['sources']`` : :class:`numpy.ndarray` of str
        Column names of the matrices: the gene sets scored.
    ``uns[key_added]['n_targets']`` : :class:`numpy.ndarray` of int (sources)
        Targets of each source in the gene universe (the same for every feature).
    ``uns[key_added]['n_targets_net']`` : :class:`numpy.ndarray` of int (sources)
        Targets of each source in the network.
    ``uns[key_added]['empty']`` : :class:`numpy.ndarray` of bool (features)
        Features with no non-zero gene score.
    ``uns[key_added]['params']`` : `dict`
        ``key``, ``genes_key``, ``method``, ``tmin``, ``mod``, ``n_universe`` (genes
        decoupler saw), ``n_sources_net``, ``n_sources_dropped``, ``n_perm``,
        ``random_state`` and ``method_kwargs``.

    Examples
    --------
    >>> import decoupler as dc
    >>> scsae.tl.feature_genes(adata)
    >>> scsae.tl.link_pathways(adata, dc.op.hallmark())  # online
    >>> scsae.tl.link_pathways(adata, "h.all.v7.0.symbols.gmt")  # a local GMT
    """
    import decoupler as dc

    available = sorted(
        n
        for n in dir(dc.mt)
        if hasattr(getattr(dc.mt, n), "func") and hasattr(getattr(dc.mt, n), "test")
    )
    if method not in available:
        msg = f"method={method!r} is not a decoupler method; choose one of {available}."
        raise ValueError(msg)
    if n_perm < 0 or n_perm == 1:
        msg = f"n_perm={n_perm}; use 0 (no calibrated q-values) or at least 2 (100 is typical)."
        raise ValueError(msg)
    genes_key = genes_key or f"{key}_genes"
    get_sae_result(adata, key)
    genes_ad, _ = get_modality(adata, mod)
    store = gene_store(genes_ad, genes_key)
    if n_perm and "params" not in genes_ad.uns.get(genes_key, {}):
        msg = (
            f"uns[{genes_key!r}] (written by scsae.tl.feature_genes) is missing, so the null "
            "features cannot be made; rerun feature_genes, or pass n_perm=0 (no q-values)."
        )
        raise KeyError(msg)
    scores_gf = np.asarray(store.varm[genes_key])
    universe = genes_ad.uns.get(genes_key, {}).get("universe")
    if universe is None:  # results from before the universe was recorded
        universe = np.isfinite(scores_gf).all(axis=1)
    universe = np.asarray(universe, dtype=bool)
    all_genes = pd.Index(store.var_names.astype(str))
    genes = all_genes[universe]
    names = feature_names(adata, key)
    if scores_gf.shape[1] != len(names):
        msg = (
            f"varm[{genes_key!r}] has {scores_gf.shape[1]} features but obsm[{key!r}] has "
            f"{len(names)}; rerun scsae.tl.feature_genes."
        )
        raise ValueError(msg)
    network = read_net(net)
    if not network["target"].isin(genes).any():
        other_raw = (
            genes_ad.raw is not None
            and store is genes_ad
            and not genes_ad.raw.var_names.equals(genes_ad.var_names)
        )
        raise _overlap_error(network, genes, has_raw=other_raw)
    n_net = network["source"].value_counts()
    counts = network.loc[network["target"].isin(genes), "source"].value_counts()
    if not (counts >= tmin).any():
        msg = (
            f"No source of the network has >= tmin={tmin} targets among the {len(genes)} genes "
            f"of the universe (best: {counts.max()}). Lower tmin or use a larger gene panel."
        )
        raise ValueError(msg)
    pruned = dc.pp.prune(genes.to_numpy(), network, tmin=tmin)
    kept = counts.reindex(pruned["source"].unique())
    # a set holding every scored gene with one weight cannot be tested (constant covariate)
    flat = pruned[pruned["target"].isin(genes)].groupby("source")["weight"].nunique() == 1
    degenerate = kept.index[(kept == len(genes)).to_numpy() & flat.reindex(kept.index).to_numpy()]
    if len(degenerate) == len(kept):
        msg = "Every source holds every gene of the universe with one weight: nothing to test."
        raise ValueError(msg)
    if len(degenerate):
        logg.warning(
            f"{len(degenerate)} sources contain every scored gene and cannot be tested; left out "
            f"(e.g. {list(degenerate[:3])})."
        )
        kept = kept.drop(degenerate)
    sources = np.asarray(kept.index.sort_values(), dtype=str)
    network = pruned[pruned["source"].isin(sources) & pruned["target"].isin(genes)]
    share = kept.reindex(sources) / n_net.reindex(sources)
    if (share < 0.5).any():
        logg.warning(
            f"{int((share < 0.5).sum())} of {len(sources)} sets keep fewer than half their genes "
            f"in the universe of {len(genes)} genes (median kept: {share.median():.0%}; e.g. "
            f"{share.idxmin()}: {kept[share.idxmin()]} of {n_net[share.idxmin()]}). Their scores "
            "speak for the measured part of the set only."
        )

    start = logg.info(
        f"linking {len(names)} features to {len(sources)} sources with decoupler.mt.{method} "
        f"over a universe of {len(genes)} genes"
    )
    # one float64 copy of the universe's scores (atlas scale: genes x features is large)
    values = (scores_gf if universe.all() else scores_gf[universe]).astype(np.float64)
    np.nan_to_num(values, copy=False, nan=0.0)
    empty = ~(values != 0).any(axis=0)
    index = np.array(names)[~empty]
    kwargs = method_kwargs or {}
    shape = (len(names), len(sources))
    es_full, pv_full = np.full(shape, np.nan), np.full(shape, np.nan)
    z_full, q_full = np.full(shape, np.nan), np.full(shape, np.nan)
    if len(index):
        weights = _weights(network, genes, sources) if method == "ulm" else None
        run = {"index": index, "genes": genes, "net": network, "sources": sources}
        run["weights"] = weights
        live = values[:, ~empty] if empty.any() else values
        es, pv = _run_method(dc, method, live.T, **run, **kwargs)
        del live
        es_full[~empty] = es
        if pv is not None:
            pv_full[~empty] = pv
        if n_perm:
            null_sum, null_sq = np.zeros_like(es), np.zeros_like(es)
            for null in null_gene_scores(
                adata, genes_key, mod=mod, n_perm=n_perm, random_state=random_state
            ):
                null = np.nan_to_num(null[universe][:, ~empty], nan=0.0)
                null_es = _run_method(dc, method, null.T, **run, **kwargs)[0]
                null_sum += np.nan_to_num(null_es)
                null_sq += np.nan_to_num(null_es) ** 2
            z_full[~empty], q_full[~empty] = _permutation_q(es, null_sum, null_sq, n_perm)
    if empty.any():
        logg.warning(
            f"{int(empty.sum())} features have no gene scores (dead or untested); kept with NaN scores."
        )
    params = {
        "key": key,
        "genes_key": genes_key,
        "method": method,
        "tmin": int(tmin),
        "mod": mod or "",
        "n_universe": len(genes),
        "n_sources_net": len(n_net),
        "n_sources_dropped": len(n_net) - len(sources),
        "n_perm": int(n_perm),
        "random_state": int(random_state),
        "method_kwargs": {k: v for k, v in kwargs.items() if v is not None},
    }
    key_added = key_added or f"{key}_pathways"
    target = adata.copy() if copy else adata
    target_ad = get_modality(target, mod)[0]
    result = {
        "params": params,
        "scores": es_full.astype(np.float32),
        "pvals_adj": pv_full.astype(np.float32),
        "sources": sources,
        "n_targets": kept.reindex(sources).to_numpy(dtype=np.int64),
        "n_targets_net": n_net.reindex(sources).to_numpy(dtype=np.int64),
        "empty": empty,
    }
    if n_perm:
        result |= {"zscores": z_full.astype(np.float32), "qvals": q_full.astype(np.float32)}
    target_ad.uns[key_added] = result
    logg.info("    finished", time=start, deep=f"added\n    'uns[{key_added!r}]'")
    return target if copy else None
