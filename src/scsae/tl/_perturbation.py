"""Perturbation-model helpers: splits, observed ATE, evaluation and model comparison."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scanpy import logging as logg

from .._utils._perturbation import log_normalize

if TYPE_CHECKING:  # the models (scvi-tools, Lightning) load only when a function needs them
    from ..models import SAMSVAE


def _labels(adata: AnnData, perturbation_key: str) -> pd.Series:
    if perturbation_key not in adata.obs:
        msg = f"perturbation_key={perturbation_key!r} is not a column of adata.obs; columns are {list(adata.obs.columns)}."
        raise KeyError(msg)
    return adata.obs[perturbation_key].astype(str)


def _checked_perturbations(
    labels: np.ndarray, perturbations: Sequence[str] | None, control: str, where: str
) -> list[str]:
    """The perturbations to evaluate (default: every label but the control), each with cells."""
    if perturbations is None:
        perturbations = [lab for lab in pd.unique(labels) if lab != control]
    missing = [p for p in perturbations if not (labels == p).any()]
    if missing:
        msg = f"No cells labelled {missing} in {where}."
        raise ValueError(msg)
    return list(perturbations)


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
    perturbations = _checked_perturbations(
        labels, perturbations, control, f"adata.obs[{perturbation_key!r}]"
    )
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


def _score(predicted: pd.DataFrame, observed: pd.DataFrame, n_top_genes: int) -> pd.DataFrame:
    """Per-perturbation agreement of predicted and observed ATE tables (same rows, genes).

    ``rank``: the fraction of the other perturbations whose observed ATE correlates (all
    genes) better with the prediction for ``p`` than ``p``'s own observed ATE does; 0 is
    perfect, 0.5 what an uninformative prediction gets, NaN with a single perturbation.
    """
    pred, obs = predicted.to_numpy(dtype=float), observed.to_numpy(dtype=float)
    n = len(obs)
    corr = np.array([[_pearson(pred[i], obs[j]) for j in range(n)] for i in range(n)])
    rows = []
    for i in range(n):
        o, q = obs[i], pred[i]
        top = np.argsort(-np.abs(o))[:n_top_genes]
        others = np.delete(corr[i], i)
        rank = np.nan
        if n > 1 and np.isfinite(corr[i, i]):
            rank = float(np.mean(np.nan_to_num(others, nan=-np.inf) > corr[i, i]))
        rows.append(
            {
                "pearson_all": _pearson(q, o),
                "r2_all": _r2(q, o),
                "pearson_top": _pearson(q[top], o[top]),
                "r2_top": _r2(q[top], o[top]),
                "rank": rank,
            }
        )
    return pd.DataFrame(rows, index=observed.index)


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
    out = _score(predicted, observed, n_top_genes).drop(columns="rank")
    out.insert(0, "n_cells", [int((labels == p).sum()) for p in observed.index])
    out.attrs["predicted"] = predicted
    out.attrs["observed"] = observed
    out.attrs["n_top_genes"] = n_top_genes
    return out


def baseline_effects(
    adata_train: AnnData,
    perturbations: Sequence[str],
    *,
    perturbation_key: str = "target",
    control: str = "non-targeting",
    delimiter: str = "+",
    layer: str | None = None,
) -> dict[str, pd.DataFrame]:
    """ATE predictions of the field's baselines, computed from training cells only.

    ``additive``: the sum of the observed training ATEs of a label's components (for a
    combination ``A+B``, ATE(A) + ATE(B); for a single, its own training ATE; NaN when a
    component has no training cells). ``mean``: the average observed ATE of all
    training perturbations. ``control``: no effect (zeros).

    Parameters
    ----------
    adata_train
        Training cells, raw counts, with control cells.
    perturbations
        Labels to predict.
    perturbation_key, control, delimiter, layer
        As in :func:`~scsae.tl.average_treatment_effect`.

    Returns
    -------
    `dict`
        One perturbations x genes :class:`~pandas.DataFrame` of effects per baseline name.
    """
    from .._utils._perturbation import split_labels

    train = average_treatment_effect(
        adata_train, perturbation_key=perturbation_key, control=control, layer=layer
    )
    index = pd.Index(list(perturbations), name="perturbation")
    parts = split_labels(index, control=control, delimiter=delimiter)
    nan = np.full(adata_train.n_vars, np.nan)
    additive = [
        train.loc[comp].to_numpy().sum(0) if comp and set(comp) <= set(train.index) else nan
        for comp in parts
    ]
    mean = np.tile(train.to_numpy().mean(0), (len(index), 1))
    frame = lambda values: pd.DataFrame(values, index=index, columns=adata_train.var_names)  # noqa: E731
    return {
        "additive": frame(np.vstack(additive) if additive else mean[:0]),
        "mean": frame(mean),
        "control": frame(np.zeros_like(mean)),
    }


def evaluate_perturbation_model(
    models: SAMSVAE | Mapping[str, SAMSVAE] | None,
    adata_test: AnnData,
    adata_train: AnnData,
    *,
    perturbation_key: str = "target",
    control: str = "non-targeting",
    delimiter: str = "+",
    perturbations: Sequence[str] | None = None,
    baselines: Sequence[str] = ("additive", "mean", "control"),
    n_top_genes: int = 20,
    n_cells: int = 2000,
    random_state: int = 0,
    return_effects: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Score predicted perturbation effects on held-out cells beside the field's baselines.

    For every held-out perturbation (and averaged), the predicted ATE of each model and
    of each baseline (:func:`~scsae.tl.baseline_effects`, from the training cells only) is compared
    with the observed ATE of the held-out cells (against the control cells of
    ``adata_test``, or of ``adata_train`` when the test cells have none, e.g. held-out
    combinations): Pearson over all genes and over the ``n_top_genes`` with the largest
    observed effect, R² of both, and a rank (see Returns).

    Parameters
    ----------
    models
        A trained :class:`~scsae.models.SAMSVAE`, a mapping of names to models, or `None`
        (baselines only). Predictions start from the control cells of the model's data.
    adata_test
        Held-out cells (raw counts) with labels in ``perturbation_key``.
    adata_train
        The training cells (raw counts, with controls): source of the baselines.
    perturbation_key, control, delimiter
        Label column, control label and separator of combinations.
    perturbations
        Labels to evaluate; `None`: every non-control label of ``adata_test``.
    baselines
        Any of ``"additive"``, ``"mean"``, ``"control"``.
    n_top_genes
        Top DE genes (largest absolute observed ATE) of ``pearson_top``/``r2_top``.
    n_cells
        Counterfactual cells per perturbation of the models' predictions.
    random_state
        Seed of the predictions.
    return_effects
        Also return the ATE tables (perturbations x genes): ``"observed"`` and one per
        method.

    Returns
    -------
    DataFrame indexed by (``method``, ``perturbation``): methods are the model names and
    ``"baseline_additive"``, ``"baseline_mean"``, ``"baseline_control"``; one row per
    perturbation and a row ``"mean"`` per method, with ``n_cells`` (observed cells), ``pearson_all``,
    ``r2_all``, ``pearson_top``, ``r2_top`` and ``rank``: the fraction of the other
    evaluated perturbations whose observed ATE correlates better with the prediction
    for ``p`` than ``p``'s own (0 best, 0.5 uninformative; NaN for the ``control``
    baseline, which predicts nothing).
    """
    unknown = sorted(set(baselines) - {"additive", "mean", "control"})
    if unknown:
        msg = f"baselines {unknown} are not among 'additive', 'mean', 'control'."
        raise ValueError(msg)
    labels = _labels(adata_test, perturbation_key)
    perturbations = _checked_perturbations(
        np.asarray(labels), perturbations, control, f"adata_test.obs[{perturbation_key!r}]"
    )
    source = adata_test if (labels == control).any() else adata_train
    controls = (_labels(source, perturbation_key) == control).to_numpy()
    if not controls.any():
        msg = f"No control cells labelled {control!r} in adata_test or adata_train."
        raise ValueError(msg)
    base = log_normalize(source.X[np.flatnonzero(controls)]).mean(0)
    observed = pd.DataFrame(
        [
            log_normalize(adata_test.X[np.flatnonzero(labels == p)]).mean(0) - base
            for p in perturbations
        ],
        index=pd.Index(list(perturbations), name="perturbation"),
        columns=adata_test.var_names,
    )
    from ..models import SAMSVAE

    if isinstance(models, SAMSVAE):
        models = {models.module.variant: models}
    models = dict(models or {})
    taken = sorted(set(models) & {f"baseline_{b}" for b in baselines})
    if taken:
        msg = f"Model names {taken} are the names of baselines; name the models otherwise."
        raise ValueError(msg)
    predicted: dict[str, pd.DataFrame] = {}
    for name, model in models.items():
        ate = model.get_average_treatment_effect(
            list(perturbations), n_cells=n_cells, random_state=random_state
        )
        predicted[name] = ate.loc[:, observed.columns]
    effects = baseline_effects(
        adata_train,
        list(perturbations),
        perturbation_key=perturbation_key,
        control=control,
        delimiter=delimiter,
    )
    predicted.update({f"baseline_{b}": effects[b].loc[:, observed.columns] for b in baselines})
    counts = [int((labels == p).sum()) for p in perturbations]
    tables = []
    for name, pred in predicted.items():
        table = _score(pred, observed, n_top_genes)
        table.insert(0, "n_cells", counts)
        table.loc["mean"] = table.mean()
        table.index = pd.MultiIndex.from_product(
            [[name], table.index], names=["method", "perturbation"]
        )
        tables.append(table)
    out = pd.concat(tables)
    return (out, {"observed": observed, **predicted}) if return_effects else out


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
    from ..models import SAMSVAE

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
    mask_probabilities: pd.DataFrame | np.ndarray,
    true_masks: np.ndarray,
    *,
    model_coords: np.ndarray,
    true_coords: np.ndarray,
) -> float:
    """AUROC of inferred mask probabilities against true 0/1 masks.

    Latent dimensions are only defined up to order, so model dimensions are first
    matched to true ones, and the matching must not come from the probabilities being
    scored: it is the Hungarian assignment on the absolute correlation between the
    columns of ``model_coords`` and ``true_coords``, the same rows in two coordinate
    systems, e.g. the model's expected shifts and the true embeddings (perturbations x
    dims) or the model's latent and the true latent of held-out cells (cells x dims).
    Unmatched model dimensions are dropped.

    Parameters
    ----------
    mask_probabilities
        Perturbations x model latent dims (:meth:`scsae.models.SAMSVAE.get_mask_probabilities`).
    true_masks
        Perturbations x true latent dims, same perturbation order.
    model_coords
        Rows x model latent dims that fix the matching.
    true_coords
        The same rows x true latent dims.
    """
    from scipy.optimize import linear_sum_assignment
    from sklearn.metrics import roc_auc_score

    probs = np.asarray(mask_probabilities, dtype=float)
    truth = np.asarray(true_masks).astype(int)
    if probs.shape[0] != truth.shape[0]:
        msg = f"{probs.shape[0]} perturbations in mask_probabilities but {truth.shape[0]} in true_masks."
        raise ValueError(msg)
    a, b = np.asarray(model_coords, dtype=float), np.asarray(true_coords, dtype=float)
    if a.shape != (a.shape[0], probs.shape[1]) or b.shape != (a.shape[0], truth.shape[1]):
        msg = (
            f"model_coords {a.shape} and true_coords {b.shape} must share their rows and have "
            f"the {probs.shape[1]} model and {truth.shape[1]} true latent dims as columns."
        )
        raise ValueError(msg)
    a, b = a - a.mean(0), b - b.mean(0)
    denom = np.outer(np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0))
    corr = np.abs(np.divide(a.T @ b, denom, out=np.zeros_like(denom), where=denom > 0))
    rows, cols = linear_sum_assignment(-corr)
    return float(roc_auc_score(truth[:, cols].ravel(), probs[:, rows].ravel()))


__all__ = [
    "average_treatment_effect",
    "baseline_effects",
    "compare_perturbation_models",
    "evaluate_ate",
    "evaluate_perturbation_model",
    "mask_recovery_auroc",
    "perturbation_split",
]
