"""``tl.link_pathways``: enrichment of gene sets / regulons in every SAE feature (decoupler)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scanpy import logging as logg
from scipy import stats

from .._utils._docs import doc_params
from .._utils._features import (
    DOC_KEY,
    DOC_MOD,
    feature_names,
    gene_store,
    get_modality,
    get_sae_result,
)

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
    ``viper``, ``waggr``... All features are scored in one call. Features whose gene
    scores are all zero (dead or untested) are kept, with NaN scores, never dropped.

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
        Minimum targets of a source among the scored genes; smaller sources are
        left out (their number is logged and kept in ``params``).
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
        Benjamini-Hochberg adjusted p-values across the sources of each feature, as
        decoupler returns them (``mlm``: adjusted here the same way); NaN for methods
        without a test (``aucell``) and for empty features.
    ``uns[key_added]['sources']`` : :class:`numpy.ndarray` of str
        Column names of the matrices: the gene sets scored.
    ``uns[key_added]['n_targets']`` : :class:`numpy.ndarray` of int (sources)
        Targets of each source among the scored genes.
    ``uns[key_added]['empty']`` : :class:`numpy.ndarray` of bool (features)
        Features with no non-zero gene score.
    ``uns[key_added]['params']`` : `dict`
        ``key``, ``genes_key``, ``method``, ``tmin``, ``mod``, ``n_sources_net``,
        ``n_sources_dropped`` and ``method_kwargs``.

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
    genes_key = genes_key or f"{key}_genes"
    get_sae_result(adata, key)
    genes_ad, _ = get_modality(adata, mod)
    store = gene_store(genes_ad, genes_key)
    genes = pd.Index(store.var_names.astype(str))
    scores_gf = np.asarray(store.varm[genes_key], dtype=np.float64)
    names = feature_names(adata, key)
    if scores_gf.shape[1] != len(names):
        msg = (
            f"varm[{genes_key!r}] has {scores_gf.shape[1]} features but obsm[{key!r}] has "
            f"{len(names)}; rerun scsae.tl.feature_genes."
        )
        raise ValueError(msg)
    network = read_net(net)
    n_overlap = network["target"].isin(genes).sum()
    if n_overlap == 0:
        other_raw = (
            genes_ad.raw is not None
            and store is genes_ad
            and not genes_ad.raw.var_names.equals(genes_ad.var_names)
        )
        raise _overlap_error(network, genes, has_raw=other_raw)
    counts = network.loc[network["target"].isin(genes), "source"].value_counts()
    n_sources_net = network["source"].nunique()
    kept = counts[counts >= tmin]
    # a set holding every scored gene with one weight cannot be tested (constant covariate)
    in_genes = network[network["target"].isin(genes)]
    flat = in_genes.groupby("source")["weight"].nunique() == 1
    degenerate = kept.index[(kept == len(genes)).to_numpy() & flat.reindex(kept.index).to_numpy()]
    if len(degenerate):
        logg.warning(
            f"{len(degenerate)} sources contain every scored gene and cannot be tested; left out "
            f"(e.g. {list(degenerate[:3])})."
        )
        kept = kept.drop(degenerate)
        network = network[~network["source"].isin(degenerate)]
    if kept.empty:
        msg = (
            f"No source of the network has >= tmin={tmin} targets among the scored genes "
            f"(best: {counts.max() if len(counts) else 0}). Lower tmin or use a larger gene panel."
        )
        raise ValueError(msg)

    start = logg.info(
        f"linking {len(names)} features to {len(kept)} sources with decoupler.mt.{method}"
    )
    scores_gf = np.nan_to_num(scores_gf, nan=0.0)
    empty = ~(scores_gf != 0).any(axis=0)
    data = pd.DataFrame(scores_gf[:, ~empty].T, index=np.array(names)[~empty], columns=genes)
    n_sources = len(kept)
    es_full = np.full((len(names), n_sources), np.nan, dtype=np.float32)
    pv_full = np.full((len(names), n_sources), np.nan, dtype=np.float32)
    sources = np.asarray(kept.index.sort_values(), dtype=str)
    if len(data):
        result = getattr(dc.mt, method)(
            data, network, tmin=tmin, empty=False, **(method_kwargs or {})
        )
        es, pv = result
        es = es.reindex(index=data.index, columns=sources)
        es_full[~empty] = es.to_numpy(dtype=np.float32)
        if pv is not None:
            pv = pv.reindex(index=data.index, columns=sources).to_numpy(dtype=np.float64)
            if method == "mlm":  # decoupler leaves mlm p-values unadjusted
                pv = stats.false_discovery_control(np.nan_to_num(pv, nan=1.0), axis=1)
            pv_full[~empty] = pv.astype(np.float32)
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
        "n_sources_net": int(n_sources_net),
        "n_sources_dropped": int(n_sources_net - n_sources),
        "method_kwargs": {k: v for k, v in (method_kwargs or {}).items() if v is not None},
    }
    key_added = key_added or f"{key}_pathways"
    target = adata.copy() if copy else adata
    target_ad = get_modality(target, mod)[0]
    target_ad.uns[key_added] = {
        "params": params,
        "scores": es_full,
        "pvals_adj": pv_full,
        "sources": sources,
        "n_targets": kept.reindex(sources).to_numpy(dtype=np.int64),
        "empty": empty,
    }
    logg.info("    finished", time=start, deep=f"added\n    'uns[{key_added!r}]'")
    return target if copy else None
