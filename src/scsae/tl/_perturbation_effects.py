"""``tl.perturbation_effects``: which features each perturbation of a screen moves."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scanpy import logging as logg
from scipy import sparse, stats

from .._utils._features import feature_names

Method = Literal["wilcoxon", "t-test"]


def _activations(adata: AnnData, key: str) -> sparse.csr_matrix:
    """Cells x features activations of any ``obsm`` entry (SAE, scVI latent...) as CSR."""
    if key not in adata.obsm:
        msg = f"key={key!r} is not in obsm; available: {list(adata.obsm.keys())}."
        raise KeyError(msg)
    values = adata.obsm[key]
    if isinstance(values, pd.DataFrame):
        values = values.to_numpy()
    values = sparse.csr_matrix(values, dtype=np.float64)
    if not np.isfinite(values.data).all():
        msg = f"obsm[{key!r}] holds NaN or infinite values; remove or fill them first."
        raise ValueError(msg)
    return values


def _components(label: str, control: str, delimiter: str | None) -> list[str]:
    """Perturbed genes of a label (``"A+B"`` -> ``["A", "B"]``); control parts dropped."""
    parts = label.split(delimiter) if delimiter else [label]
    return sorted({p for p in (s.strip() for s in parts) if p and p != control})


def _compare(group: np.ndarray, ref: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided test per feature (column): statistic and p-value; constant columns get p = 1."""
    with np.errstate(invalid="ignore", divide="ignore"):
        if method == "wilcoxon":
            res = stats.mannwhitneyu(group, ref, alternative="two-sided", axis=0)
        else:
            res = stats.ttest_ind(group, ref, equal_var=False, axis=0)
    stat, pval = np.asarray(res.statistic, float), np.asarray(res.pvalue, float)
    constant = (np.ptp(group, axis=0) == 0) & (np.ptp(ref, axis=0) == 0)
    constant &= group[0] == ref[0]
    pval = np.where(np.isfinite(pval) & ~constant, pval, 1.0)
    return np.where(np.isfinite(stat), stat, 0.0), pval


def perturbation_effects(
    adata: AnnData,
    *,
    perturbation_key: str,
    control: str,
    key: str = "X_sae",
    delimiter: str | None = "+",
    method: Method = "wilcoxon",
    min_cells: int = 10,
    key_added: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Which features each perturbation of a screen moves, tested against control cells.

    For every perturbation and feature: the change in mean activation, the change
    in the fraction of cells where the feature is active (activation > 0), a
    standardised effect (mean difference over the pooled standard deviation,
    Cohen's d) and a two-sided test of the perturbed cells against the control
    cells. P-values are adjusted by Benjamini-Hochberg over the whole table
    (all perturbations and features together), so ``qval < 0.05`` bounds the
    fraction of false calls among all calls of the screen.

    Any ``obsm`` entry works: SAE activations, an scVI latent, a SAMS-VAE basal
    latent. Cells are treated as independent replicates; with strong batch or
    guide effects, compare against controls of the same batch first.

    Parameters
    ----------
    adata
        AnnData with activations in ``obsm[key]`` and the perturbation of each cell
        in ``obs[perturbation_key]``.
    perturbation_key
        Column of ``obs`` naming each cell's perturbation.
    control
        Label of the control cells in ``obs[perturbation_key]`` (e.g.
        ``"non-targeting"``, ``"control"``).
    key
        Key of the activations in ``obsm``: SAE features (``key_added`` of
        :func:`scsae.tl.sae`) or any other non-negative or signed embedding.
    delimiter
        Separator of combined perturbations (``"KLF1+MAP2K6"``). Labels are split to
        count the perturbed genes per perturbation and, for combinations whose parts
        are all in the screen, to give the additive expectation (sum of the parts'
        mean changes). Parts equal to ``control`` (``"KLF1+ctrl"``) are ignored.
        `None`: labels are never split.
    method
        ``"wilcoxon"`` (Mann-Whitney U, :func:`scipy.stats.mannwhitneyu`, with tie
        correction; robust to the many zeros of sparse activations) or ``"t-test"``
        (Welch's t, :func:`scipy.stats.ttest_ind`).
    min_cells
        Perturbations with fewer cells are left out (named in ``params['skipped']``).
    key_added
        Key in ``uns``; default ``key + '_perturbation_effects'``.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    `None`, or the copy when ``copy=True``. Sets

    ``adata.uns[key_added]['table']`` : :class:`pandas.DataFrame`
        One row per perturbation and feature: ``perturbation``, ``feature`` (``"0"``,
        ``"1"``... as in :func:`~scsae.tl.feature_table`), ``n_cells``,
        ``n_perturbed_genes``, ``mean_control``, ``mean_perturbed``, ``diff_mean``,
        ``frac_control``, ``frac_perturbed``, ``diff_frac``, ``effect`` (Cohen's
        d), ``statistic`` (U or t), ``pval``, ``qval`` and ``additive_diff_mean``
        (sum of the single perturbations' ``diff_mean``; NaN unless every part of a
        combination is in the table).
    ``adata.uns[key_added]['params']`` : `dict`
        ``key``, ``perturbation_key``, ``control``, ``delimiter`` (``""`` for `None`),
        ``method``, ``min_cells``, ``n_control``, ``skipped``.

    Examples
    --------
    >>> scsae.tl.perturbation_effects(adata, perturbation_key="target", control="non-targeting")
    >>> tab = adata.uns["X_sae_perturbation_effects"]["table"]
    >>> tab[tab.qval < 0.05].sort_values("effect").head()
    """
    if method not in ("wilcoxon", "t-test"):
        msg = f"method={method!r}; choose 'wilcoxon' or 't-test'."
        raise ValueError(msg)
    if min_cells < 2:
        msg = f"min_cells={min_cells}; need at least 2 cells per group to test."
        raise ValueError(msg)
    acts = _activations(adata, key)
    if perturbation_key not in adata.obs:
        msg = f"perturbation_key={perturbation_key!r} is not in obs; columns: {list(adata.obs.columns)}."
        raise KeyError(msg)
    labels = adata.obs[perturbation_key].astype(str).to_numpy()
    names = pd.unique(labels)
    if control not in names:
        shown = ", ".join(map(repr, sorted(names)[:30])) + (" ..." if len(names) > 30 else "")
        msg = f"control={control!r} is not a label of obs[{perturbation_key!r}]; labels: {shown}."
        raise ValueError(msg)
    is_ctrl = labels == control
    if is_ctrl.sum() < min_cells:
        msg = f"only {int(is_ctrl.sum())} control cells (< min_cells={min_cells})."
        raise ValueError(msg)
    start = logg.info(
        f"testing {acts.shape[1]} features of obsm[{key!r}] per perturbation ({method})"
    )

    ref = acts[is_ctrl].toarray()
    mean_c, frac_c, var_c = ref.mean(0), (ref > 0).mean(0), ref.var(0, ddof=1)
    n_c = ref.shape[0]
    feats = feature_names(adata, key)
    rows, skipped = [], []
    for pert in sorted(n for n in names if n != control):
        cells = labels == pert
        n = int(cells.sum())
        if n < min_cells:
            skipped.append(pert)
            continue
        group = acts[cells].toarray()
        stat, pval = _compare(group, ref, method)
        mean_p, var_p = group.mean(0), group.var(0, ddof=1)
        pooled = np.sqrt(((n - 1) * var_p + (n_c - 1) * var_c) / (n + n_c - 2))
        diff = mean_p - mean_c
        effect = np.divide(diff, pooled, out=np.zeros_like(diff), where=pooled > 0)
        frac_p = (group > 0).mean(0)
        rows.append(
            pd.DataFrame(
                {
                    "perturbation": pert,
                    "feature": feats,
                    "n_cells": n,
                    "n_perturbed_genes": len(_components(pert, control, delimiter)),
                    "mean_control": mean_c,
                    "mean_perturbed": mean_p,
                    "diff_mean": diff,
                    "frac_control": frac_c,
                    "frac_perturbed": frac_p,
                    "diff_frac": frac_p - frac_c,
                    "effect": effect,
                    "statistic": stat,
                    "pval": pval,
                }
            )
        )
    if not rows:
        msg = f"no perturbation has >= min_cells={min_cells} cells; lower min_cells."
        raise ValueError(msg)
    table = pd.concat(rows, ignore_index=True)
    table["qval"] = stats.false_discovery_control(table["pval"].to_numpy())
    table["additive_diff_mean"] = _additive(table, control, delimiter)
    for col in ("perturbation", "feature"):
        table[col] = pd.Categorical(table[col], categories=pd.unique(table[col]))
    if skipped:
        logg.warning(
            f"{len(skipped)} perturbations with < {min_cells} cells left out: {skipped[:10]}"
        )

    params: dict[str, Any] = {
        "key": key,
        "perturbation_key": perturbation_key,
        "control": control,
        "delimiter": delimiter or "",
        "method": method,
        "min_cells": int(min_cells),
        "n_control": int(n_c),
        "skipped": np.asarray(skipped, dtype=str),
    }
    key_added = key_added or f"{key}_perturbation_effects"
    target = adata.copy() if copy else adata
    target.uns[key_added] = {"table": table, "params": params}
    logg.info(
        f"    finished: {int((table['qval'] < 0.05).sum())} of {len(table)} effects at q < 0.05",
        time=start,
        deep=f"added\n    'uns[{key_added!r}]' (table, params)",
    )
    return target if copy else None


def _additive(table: pd.DataFrame, control: str, delimiter: str | None) -> np.ndarray:
    """Sum of the single perturbations' ``diff_mean`` for each combination, NaN otherwise."""
    out = np.full(len(table), np.nan)
    if not delimiter:
        return out
    diff = table.pivot(index="perturbation", columns="feature", values="diff_mean")
    singles = {
        parts[0]: label
        for label in diff.index
        if len(parts := _components(label, control, delimiter)) == 1
    }
    for label in diff.index:
        parts = _components(label, control, delimiter)
        if len(parts) < 2 or not all(p in singles for p in parts):
            continue
        expected = sum(diff.loc[singles[p]] for p in parts)
        rows = (table["perturbation"] == label).to_numpy()
        out[rows] = expected.loc[table.loc[rows, "feature"]].to_numpy()
    return out
