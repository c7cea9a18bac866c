"""Perturbation-model helpers: splits, observed ATE, evaluation and model comparison."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scanpy import logging as logg

from ..models import SAMSVAE
from ..models._samsvae_model import log_normalize


def _labels(adata: AnnData, perturbation_key: str) -> pd.Series:
    if perturbation_key not in adata.obs:
        msg = f"perturbation_key={perturbation_key!r} is not a column of adata.obs; columns are {list(adata.obs.columns)}."
        raise KeyError(msg)
    return adata.obs[perturbation_key].astype(str)


def perturbation_split(
    adata: AnnData,
    *,
    perturbation_key: str = "target",
    holdout: Literal["cells", "combinations"] = "cells",
    test_size: float = 0.2,
    combinations: Sequence[str] | None = None,
    delimiter: str = "+",
    random_state: int = 0,
    key_added: str = "split",
    copy: bool = False,
) -> AnnData | None:
    """Split cells into ``"train"`` and ``"test"`` for perturbation models.

    Parameters
    ----------
    adata
        Annotated data matrix.
    perturbation_key
        Column of ``adata.obs`` with perturbation labels.
    holdout
        ``"cells"``: a random ``test_size`` fraction of the cells of every label
        (stratified). ``"combinations"``: all cells of whole combinations
        (labels with ``delimiter``), so their effects must be predicted from
        the single perturbations.
    test_size
        Fraction of cells (``"cells"``) or of combinations (``"combinations"``,
        at least one) held out; ignored when ``combinations`` is given.
    combinations
        Labels of the combinations to hold out.
    delimiter
        Separator of combined targets.
    random_state
        Seed.
    key_added
        Name of the ``obs`` column written.
    copy
        Return a copy instead of writing into ``adata``.

    Returns
    -------
    ``adata`` (a copy) if ``copy=True``, else `None`; writes
    ``adata.obs[key_added]`` (categorical ``"train"``/``"test"``) and
    ``adata.uns[key_added]`` (``params`` and the held-out ``combinations``).
    """
    labels = _labels(adata, perturbation_key)
    rng = np.random.default_rng(random_state)
    test = np.zeros(adata.n_obs, dtype=bool)
    held: list[str] = []
    if holdout == "cells":
        if not 0 < test_size < 1:
            msg = f"test_size={test_size} must be in (0, 1)."
            raise ValueError(msg)
        for label in pd.unique(labels):
            where = np.flatnonzero(labels.to_numpy() == label)
            n_test = round(test_size * len(where))
            test[rng.choice(where, size=n_test, replace=False)] = True
    elif holdout == "combinations":
        combos = sorted({lab for lab in pd.unique(labels) if delimiter in lab})
        if combinations is not None:
            unknown = sorted(set(combinations) - set(combos))
            if unknown:
                msg = f"Combinations {unknown} are not labels of adata.obs[{perturbation_key!r}]; combinations are {combos}."
                raise ValueError(msg)
            held = list(combinations)
        else:
            if not combos:
                msg = f"adata.obs[{perturbation_key!r}] has no combination labels (with {delimiter!r}) to hold out."
                raise ValueError(msg)
            n_held = max(1, round(test_size * len(combos)))
            held = sorted(rng.choice(combos, size=n_held, replace=False).tolist())
        test = labels.isin(held).to_numpy()
    else:
        msg = f"holdout={holdout!r} must be 'cells' or 'combinations'."
        raise ValueError(msg)
    adata = adata.copy() if copy else adata
    adata.obs[key_added] = pd.Categorical(
        np.where(test, "test", "train"), categories=["train", "test"]
    )
    adata.uns[key_added] = {
        "params": {
            "perturbation_key": perturbation_key,
            "holdout": holdout,
            "test_size": test_size,
            "random_state": random_state,
        },
        "combinations": np.asarray(held, dtype=object),
    }
    logg.info(
        f"    {int(test.sum())} test cells, {int((~test).sum())} train cells in obs[{key_added!r}]"
    )
    return adata if copy else None


def average_treatment_effect(
    adata: AnnData,
    *,
    perturbation_key: str = "target",
    control: str = "non-targeting",
    perturbations: Sequence[str] | None = None,
    layer: str | None = None,
    target_sum: float = 1e4,
) -> pd.DataFrame:
    """Observed average treatment effect per gene, perturbations x genes.

    Counts are normalised to ``target_sum`` per cell and ``log2(x + 1)``
    transformed; the ATE of a label is the mean of its cells minus the mean
    of the control cells.

    Parameters
    ----------
    adata
        Raw counts in ``X`` or ``layer``.
    perturbation_key
        Column of ``adata.obs`` with perturbation labels.
    control
        Label of the control cells.
    perturbations
        Labels to evaluate; `None`: every non-control label.
    layer
        Layer of raw counts.
    target_sum
        Counts per cell after normalisation.
    """
    labels = _labels(adata, perturbation_key).to_numpy()
    X = adata.layers[layer] if layer is not None else adata.X
    is_control = labels == control
    if not is_control.any():
        msg = f"No control cells labelled {control!r} in adata.obs[{perturbation_key!r}]."
        raise ValueError(msg)
    if perturbations is None:
        perturbations = [lab for lab in pd.unique(labels) if lab != control]
    missing = [p for p in perturbations if not (labels == p).any()]
    if missing:
        msg = f"No cells labelled {missing} in adata.obs[{perturbation_key!r}]."
        raise ValueError(msg)
    base = log_normalize(X[np.flatnonzero(is_control)], target_sum=target_sum).mean(0)
    rows = [
        log_normalize(X[np.flatnonzero(labels == p)], target_sum=target_sum).mean(0) - base
        for p in perturbations
    ]
    return pd.DataFrame(
        rows, index=pd.Index(list(perturbations), name="perturbation"), columns=adata.var_names
    )


def _r2(pred: np.ndarray, obs: np.ndarray) -> float:
    ss_res = float(((obs - pred) ** 2).sum())
    ss_tot = float(((obs - obs.mean()) ** 2).sum())
    return 1 - ss_res / ss_tot if ss_tot > 0 else np.nan


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() == 0 or b.std() == 0:
        return np.nan
    return float(np.corrcoef(a, b)[0, 1])


def evaluate_ate(
    model: SAMSVAE,
    adata: AnnData,
    *,
    perturbation_key: str = "target",
    control: str = "non-targeting",
    perturbations: Sequence[str] | None = None,
    n_top_genes: int = 20,
    n_cells: int = 2000,
    control_adata: AnnData | None = None,
    random_state: int = 0,
) -> pd.DataFrame:
    """Compare predicted and observed ATE of held-out cells, per perturbation.

    The observed ATE uses the cells of ``adata`` (e.g. a test split, which must
    contain control cells); the predicted ATE starts from control cells of
    ``control_adata`` (default: the model's training data). Top DE genes are
    the ``n_top_genes`` with the largest absolute observed ATE.

    Parameters
    ----------
    model
        A trained :class:`~scsae.models.SAMSVAE` (any variant).
    adata
        Held-out cells with labels in ``perturbation_key``.
    perturbation_key, control
        Label column and control label.
    perturbations
        Labels to evaluate; `None`: every non-control label of ``adata``.
    n_top_genes
        Number of top DE genes for ``pearson_top``/``r2_top``.
    n_cells
        Counterfactual cells per perturbation.
    control_adata
        Source of control cells for the predictions.
    random_state
        Seed of the predictions.

    Returns
    -------
    DataFrame indexed by perturbation with ``n_cells`` (observed), ``pearson_all``,
    ``r2_all``, ``pearson_top`` and ``r2_top``; ``attrs['predicted']`` and
    ``attrs['observed']`` hold the two ATE tables (perturbations x genes).
    """
    observed = average_treatment_effect(
        adata, perturbation_key=perturbation_key, control=control, perturbations=perturbations
    )
    predicted = model.get_average_treatment_effect(
        list(observed.index), n_cells=n_cells, adata=control_adata, random_state=random_state
    )
    predicted = predicted.loc[:, observed.columns]
    labels = _labels(adata, perturbation_key)
    rows = []
    for p in observed.index:
        o, q = observed.loc[p].to_numpy(), predicted.loc[p].to_numpy()
        top = np.argsort(-np.abs(o))[:n_top_genes]
        rows.append(
            {
                "n_cells": int((labels == p).sum()),
                "pearson_all": _pearson(q, o),
                "r2_all": _r2(q, o),
                "pearson_top": _pearson(q[top], o[top]),
                "r2_top": _r2(q[top], o[top]),
            }
        )
    out = pd.DataFrame(rows, index=observed.index)
    out.attrs["predicted"] = predicted
    out.attrs["observed"] = observed
    out.attrs["n_top_genes"] = n_top_genes
    return out


def compare_perturbation_models(
    adata_train: AnnData,
    adata_test: AnnData,
    *,
    variants: Sequence[str] = ("samsvae", "additive", "cvae"),
    perturbation_key: str = "target",
    control: str = "non-targeting",
    delimiter: str = "+",
    layer: str | None = None,
    batch_key: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    train_kwargs: Mapping[str, Any] | None = None,
    n_particles: int = 100,
    n_top_genes: int = 20,
    n_cells: int = 2000,
    random_state: int = 0,
    return_models: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, dict[str, SAMSVAE]]:
    """Train SAMS-VAE and its baselines on one split and score them on the other.

    Every variant gets the same data, architecture, training arguments and seed.

    Parameters
    ----------
    adata_train, adata_test
        Training and held-out cells (raw counts); see :func:`perturbation_split`.
    variants
        Variants of :class:`~scsae.models.SAMSVAE` to train; a name may carry a
        guide, ``"samsvae:correlated"``.
    perturbation_key, control, delimiter, layer, batch_key
        Passed to :meth:`SAMSVAE.setup_anndata <scsae.models.SAMSVAE.setup_anndata>`.
    model_kwargs
        Arguments of the model (``n_latent``...), shared by all variants.
    train_kwargs
        Arguments of :meth:`~scsae.models.SAMSVAE.train`.
    n_particles
        Importance samples of the test IWELBO.
    n_top_genes, n_cells
        See :func:`evaluate_ate`; the ATE is averaged over the perturbations of
        ``adata_test`` (skipped when it has no control cells).
    random_state
        Seed of training and evaluation.
    return_models
        Also return the trained models, by variant.

    Returns
    -------
    DataFrame indexed by variant: ``test_iwelbo`` (nats per cell, higher is
    better), ``pearson_top``, ``pearson_all``, ``r2_top``, ``r2_all`` (means over
    perturbations), ``seconds_per_epoch`` and ``epochs``.
    """
    model_kwargs = dict(model_kwargs or {})
    train_kwargs = {"random_state": random_state, **dict(train_kwargs or {})}
    has_controls = (_labels(adata_test, perturbation_key) == control).any()
    rows, models = {}, {}
    for name in variants:
        variant, _, guide = name.partition(":")
        kwargs = {"random_state": random_state, **model_kwargs, "variant": variant}
        if guide:
            kwargs["guide"] = guide
        train = adata_train.copy()
        SAMSVAE.setup_anndata(
            train,
            layer,
            perturbation_key=perturbation_key,
            control=control,
            delimiter=delimiter,
            batch_key=batch_key,
        )
        model = SAMSVAE(train, **kwargs)
        model.train(**train_kwargs)
        test = adata_test.copy()
        row = {
            "test_iwelbo": model.get_iwelbo(
                test, n_particles=n_particles, random_state=random_state
            )
        }
        if has_controls:
            ev = evaluate_ate(
                model,
                test,
                perturbation_key=perturbation_key,
                control=control,
                n_top_genes=n_top_genes,
                n_cells=n_cells,
                random_state=random_state,
            )
            row.update(ev[["pearson_top", "pearson_all", "r2_top", "r2_all"]].mean().to_dict())
        row["seconds_per_epoch"] = model.train_params_["seconds_per_epoch"]
        row["epochs"] = model.train_params_["epochs_trained"]
        rows[name] = row
        models[name] = model
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    return (table, models) if return_models else table


def mask_recovery_auroc(
    mask_probabilities: pd.DataFrame | np.ndarray, true_masks: np.ndarray
) -> float:
    """AUROC of inferred mask probabilities against true 0/1 masks.

    Latent dimensions are only defined up to order, so model dimensions are first
    matched to true ones (Hungarian assignment on the absolute correlation of
    the mask columns); unmatched model dimensions are dropped.

    Parameters
    ----------
    mask_probabilities
        Perturbations x model latent dims (:meth:`scsae.models.SAMSVAE.get_mask_probabilities`).
    true_masks
        Perturbations x true latent dims, same perturbation order.
    """
    from scipy.optimize import linear_sum_assignment
    from sklearn.metrics import roc_auc_score

    probs = np.asarray(mask_probabilities, dtype=float)
    truth = np.asarray(true_masks).astype(int)
    if probs.shape[0] != truth.shape[0]:
        msg = f"{probs.shape[0]} perturbations in mask_probabilities but {truth.shape[0]} in true_masks."
        raise ValueError(msg)
    pc = probs - probs.mean(0)
    tc = truth - truth.mean(0)
    denom = np.outer(np.linalg.norm(pc, axis=0), np.linalg.norm(tc, axis=0))
    corr = np.abs(np.divide(pc.T @ tc, denom, out=np.zeros_like(denom), where=denom > 0))
    rows, cols = linear_sum_assignment(-corr)
    return float(roc_auc_score(truth[:, cols].ravel(), probs[:, rows].ravel()))


__all__ = [
    "average_treatment_effect",
    "compare_perturbation_models",
    "evaluate_ate",
    "mask_recovery_auroc",
    "perturbation_split",
]
