"""``tl.feature_recovery``: score learned features against known ground truth."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scanpy import logging as logg
from scipy import sparse
from scipy.optimize import linear_sum_assignment

from .._utils._docs import DOC_ADATA, doc_params

SIMULATION_KEY = "simulation"

#: summary metrics, in the order of the returned table, with what each measures
METRICS = {
    "dictionary_mcc": "dictionary",
    "dictionary_recovered_fraction": "dictionary",
    "dictionary_best_cosine": "dictionary",
    "code_mcc": "code",
    "code_max_corr": "code",
    "support_precision": "support",
    "support_recall": "support",
    "support_f1": "support",
    "shrinkage": "code",
}


def _as_matrix(value: Any, what: str) -> np.ndarray | sparse.csr_matrix:
    if sparse.issparse(value):
        return sparse.csr_matrix(value, dtype=np.float64)
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 2:
        msg = f"{what} must be a 2-d matrix; got shape {arr.shape}."
        raise ValueError(msg)
    return arr


def _resolve_dictionary(adata: AnnData, true_dictionary: Any) -> np.ndarray | None:
    if true_dictionary is False:
        return None
    if true_dictionary is None or isinstance(true_dictionary, str):
        name = SIMULATION_KEY if true_dictionary is None else true_dictionary
        if name not in adata.uns:
            msg = (
                f"adata.uns[{name!r}] not found (keys: {sorted(adata.uns)}); pass "
                "true_dictionary= as an array, the uns key holding it, or False to skip "
                "the dictionary metrics."
            )
            raise KeyError(msg)
        value = adata.uns[name]
        if isinstance(value, dict):
            if "true_dictionary" not in value:
                msg = f"adata.uns[{name!r}] has no 'true_dictionary' (keys: {sorted(value)})."
                raise KeyError(msg)
            value = value["true_dictionary"]
        true_dictionary = value
    return np.asarray(_as_matrix(true_dictionary, "true_dictionary"))


def _resolve_codes(adata: AnnData, codes: Any, what: str) -> Any:
    if codes is None:
        return None
    if isinstance(codes, str):
        if codes not in adata.obsm:
            msg = f"adata.obsm[{codes!r}] not found for {what}; available: {list(adata.obsm)}."
            raise KeyError(msg)
        codes = adata.obsm[codes]
    mat = _as_matrix(codes, what)
    if mat.shape[0] != adata.n_obs:
        msg = f"{what} has {mat.shape[0]} rows but adata has {adata.n_obs} cells."
        raise ValueError(msg)
    return mat


def _unit_rows(w: np.ndarray) -> np.ndarray:
    return w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)


def _cross(a: Any, b: Any) -> np.ndarray:
    """``a.T @ b`` as a dense array, for dense or sparse inputs."""
    out = a.T @ b
    return out.toarray() if sparse.issparse(out) else np.asarray(out)


def _binary(a: Any) -> Any:
    if sparse.issparse(a):
        out = a.copy()
        out.data = (out.data > 0).astype(np.float64)
        out.eliminate_zeros()
        return out
    return (a > 0).astype(np.float64)


def _column_moments(a: Any) -> tuple[np.ndarray, np.ndarray]:
    n = a.shape[0]
    if sparse.issparse(a):
        total = np.asarray(a.sum(0)).ravel()
        total_sq = np.asarray(a.multiply(a).sum(0)).ravel()
    else:
        total, total_sq = a.sum(0), (a * a).sum(0)
    mean = total / n
    var = np.maximum(total_sq / n - mean**2, 0)
    return mean, np.sqrt(var)


def _correlation(true: Any, learned: Any) -> np.ndarray:
    """Pearson correlation of every true column with every learned column."""
    n = true.shape[0]
    mean_t, sd_t = _column_moments(true)
    mean_l, sd_l = _column_moments(learned)
    cov = _cross(true, learned) / n - np.outer(mean_t, mean_l)
    denom = np.outer(sd_t, sd_l)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(denom > 0, cov / denom, 0.0)
    return np.clip(corr, -1, 1)


def _match(score: np.ndarray) -> np.ndarray:
    """Optimal one-to-one matching maximising ``score``: learned index per true row (-1: none)."""
    rows, cols = linear_sum_assignment(score, maximize=True)
    matched = np.full(score.shape[0], -1, dtype=np.int64)
    matched[rows] = cols
    return matched


@doc_params(adata=DOC_ADATA)
def feature_recovery(
    adata: AnnData,
    *,
    key: str = "X_sae",
    true_dictionary: np.ndarray | str | bool | None = None,
    true_codes: Any = "true_codes",
    cosine_threshold: float = 0.9,
    key_added: str | None = None,
) -> pd.DataFrame:
    """Score learned features against known true features (e.g. a simulation).

    True and learned features are paired one-to-one by optimal (Hungarian)
    matching, :func:`scipy.optimize.linear_sum_assignment`: on the absolute
    cosine between dictionary rows when the true dictionary is known,
    otherwise on the absolute Pearson correlation of the codes. Every
    summary is a mean over true features; a true feature left unmatched
    (fewer learned than true features) counts as 0.

    - ``dictionary_mcc``: mean ``|cos|`` between each true direction and its
      matched decoder row.
    - ``dictionary_recovered_fraction``: fraction of true directions whose
      matched decoder row has ``|cos| >= cosine_threshold``.
    - ``dictionary_best_cosine``: mean over true directions of the best
      ``|cos|`` with any decoder row (not one-to-one: several true features
      may share a row).
    - ``code_mcc``: mean ``|Pearson r|`` between each true code and its matched
      learned code.
    - ``code_max_corr``: mean over true codes of the best ``|Pearson r|`` with
      any learned code (not one-to-one); use it to compare against raw
      embedding dims.
    - ``support_precision``, ``support_recall``, ``support_f1``: whether a
      matched learned feature is active (``> 0``) exactly where its true
      feature is, counted over all cells. Recall is the share of true
      activations whose matched feature fires; precision is the share of all
      learned activations (matched or not) that hit a true one.
    - ``shrinkage``: sum of matched learned activations over the sum of true
      activations, on cells where both are active. 1 for unbiased magnitudes,
      below 1 if learned codes are shrunk (meaningful when both are in the
      same units, e.g. an SAE on the simulated embedding itself).

    Parameters
    ----------
    {adata}
    key
        Learned features: codes in ``adata.obsm[key]`` and, for the dictionary
        metrics, rows in ``adata.uns[key]['decoder']`` as written by
        :func:`scsae.tl.sae`. Any ``obsm`` matrix works for the code metrics
        (e.g. ``"X_pca"`` to score raw embedding dims as features).
    true_dictionary
        True directions, true features x embedding dims: an array, a key of
        ``adata.uns`` holding it (or a dict with a ``'true_dictionary'`` entry),
        `None` for ``adata.uns['simulation']['true_dictionary']``, or `False` to
        skip the dictionary metrics.
    true_codes
        True activations, cells x true features: an ``obsm`` key, a matrix
        (dense or sparse), or `None` to skip the code and support metrics.
    cosine_threshold
        Cosine above which a true direction counts as recovered.
    key_added
        ``uns`` key of the results; defaults to ``key + '_recovery'``.

    Returns
    -------
    Tidy :class:`pandas.DataFrame` with columns ``key``, ``metric``, ``kind``
    (``'dictionary'``, ``'code'`` or ``'support'``) and ``value``, one row per
    metric computed. Sets the following fields:

    ``adata.uns[key_added]['metrics']`` : `dict`
        The summary metrics above.
    ``adata.uns[key_added]['params']`` : `dict`
        ``key``, ``cosine_threshold``, ``matched_on`` (``'dictionary'`` or ``'codes'``),
        ``n_true`` and ``n_learned``.
    ``adata.uns[key_added]['matched_feature']`` : :class:`numpy.ndarray`
        Learned feature matched to each true feature (-1: none).
    ``adata.uns[key_added]['matched_cosine']`` : :class:`numpy.ndarray`
        Signed cosine of each matched pair (dictionary metrics only).
    ``adata.uns[key_added]['cosine_matrix']`` : :class:`numpy.ndarray`
        Signed cosines, true features x true features' matched decoder rows, so
        that a perfect recovery has ``|diagonal| = 1`` (dictionary metrics only).
    ``adata.uns[key_added]['matched_code_corr']`` : :class:`numpy.ndarray`
        Pearson r of each matched pair of codes (code metrics only).
    ``adata.uns[key_added]['max_code_corr']`` : :class:`numpy.ndarray`
        Best ``|r|`` of each true code with any learned code (code metrics only).

    Examples
    --------
    >>> import scsae
    >>> adata = scsae.datasets.simulate_superposition(20_000, 32, 256, n_active=4)
    >>> scsae.tl.sae(adata, use_rep="X_emb", n_features=256, k=4)
    >>> scsae.tl.feature_recovery(adata, key="X_sae")
    """
    if key not in adata.obsm:
        msg = (
            f"adata.obsm[{key!r}] not found; available: {list(adata.obsm)}. "
            f"Run scsae.tl.sae(adata, key_added={key!r}) first or pass key=."
        )
        raise KeyError(msg)
    if not 0 < cosine_threshold <= 1:
        msg = f"cosine_threshold={cosine_threshold} must be in (0, 1]."
        raise ValueError(msg)
    true_dict = _resolve_dictionary(adata, true_dictionary)
    true = _resolve_codes(adata, true_codes, "true_codes")
    if true_dict is None and true is None:
        msg = "Nothing to score: give true_dictionary, true_codes or both."
        raise ValueError(msg)
    learned = _resolve_codes(adata, adata.obsm[key], f"adata.obsm[{key!r}]")
    n_learned = learned.shape[1]
    start = logg.info(f"scoring {key!r} against ground truth")

    metrics: dict[str, float] = {}
    result: dict[str, Any] = {}
    cos = None
    if true_dict is not None:
        info = adata.uns.get(key)
        if not isinstance(info, dict) or "decoder" not in info:
            msg = (
                f"adata.uns[{key!r}]['decoder'] not found, needed for the dictionary metrics; "
                "run scsae.tl.sae first or pass true_dictionary=False."
            )
            raise KeyError(msg)
        decoder = np.asarray(info["decoder"], dtype=np.float64)
        if decoder.shape[1] != true_dict.shape[1] or decoder.shape[0] != n_learned:
            msg = (
                f"decoder of {key!r} is {decoder.shape} (features x dims) but the true dictionary "
                f"is {true_dict.shape} and obsm[{key!r}] has {n_learned} features; both "
                "dictionaries must live in the same embedding."
            )
            raise ValueError(msg)
        cos = _unit_rows(true_dict) @ _unit_rows(decoder).T
    if true is not None:
        n_true = true.shape[1]
        if true_dict is not None and true_dict.shape[0] != n_true:
            msg = f"true_dictionary has {true_dict.shape[0]} features but true_codes has {n_true}."
            raise ValueError(msg)
    else:
        n_true = true_dict.shape[0]

    if cos is not None:
        matched = _match(np.abs(cos))
        has = matched >= 0
        matched_cos = np.zeros(n_true)
        matched_cos[has] = cos[np.flatnonzero(has), matched[has]]
        metrics["dictionary_mcc"] = float(np.abs(matched_cos).mean())
        metrics["dictionary_recovered_fraction"] = float(
            (np.abs(matched_cos) >= cosine_threshold).mean()
        )
        metrics["dictionary_best_cosine"] = float(np.abs(cos).max(1).mean())
        cos_matrix = np.zeros((n_true, n_true))
        cos_matrix[:, has] = cos[:, matched[has]]
        result["matched_cosine"] = matched_cos.astype(np.float32)
        result["cosine_matrix"] = cos_matrix.astype(np.float32)

    if true is not None:
        corr = _correlation(true, learned)
        if cos is None:
            matched = _match(np.abs(corr))
            has = matched >= 0
        rows = np.flatnonzero(has)
        matched_corr = np.zeros(n_true)
        matched_corr[has] = corr[rows, matched[has]]
        metrics["code_mcc"] = float(np.abs(matched_corr).mean())
        max_corr = np.abs(corr).max(1) if n_learned else np.zeros(n_true)
        metrics["code_max_corr"] = float(max_corr.mean())
        tb, lb = _binary(true), _binary(learned)
        both = _cross(tb, lb)[rows, matched[has]]
        true_active = float(tb.sum())
        learned_active = float(lb.sum())
        tp = float(both.sum())
        precision = tp / learned_active if learned_active else 0.0
        recall = tp / true_active if true_active else 0.0
        metrics["support_precision"] = precision
        metrics["support_recall"] = recall
        metrics["support_f1"] = (
            2 * precision * recall / (precision + recall) if precision + recall else 0.0
        )
        positive_true = true.maximum(0) if sparse.issparse(true) else np.maximum(true, 0)
        positive_learned = (
            learned.maximum(0) if sparse.issparse(learned) else np.maximum(learned, 0)
        )
        learned_sum = float(_cross(tb, positive_learned)[rows, matched[has]].sum())
        true_sum = float(_cross(positive_true, lb)[rows, matched[has]].sum())
        metrics["shrinkage"] = learned_sum / true_sum if true_sum else float("nan")
        result["matched_code_corr"] = matched_corr.astype(np.float32)
        result["max_code_corr"] = max_corr.astype(np.float32)

    key_added = f"{key}_recovery" if key_added is None else key_added
    adata.uns[key_added] = {
        "params": {
            "key": key,
            "cosine_threshold": float(cosine_threshold),
            "matched_on": "dictionary" if cos is not None else "codes",
            "n_true": int(n_true),
            "n_learned": int(n_learned),
        },
        "metrics": metrics,
        "matched_feature": matched,
        **result,
    }
    table = pd.DataFrame(
        {
            "key": key,
            "metric": list(metrics),
            "kind": [METRICS[m] for m in metrics],
            "value": list(metrics.values()),
        }
    )
    summary = ", ".join(f"{m} {v:.3f}" for m, v in metrics.items() if m.endswith("mcc"))
    logg.info(f"    finished: {summary}", time=start, deep=f"added\n    'uns[{key_added!r}]'")
    return table
