"""``tl.sae``: train a sparse autoencoder on an embedding, write activations back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from anndata import AnnData
from scanpy import logging as logg

from .._utils._docs import DOC_ADATA, DOC_ARCHITECTURE, DOC_TRAIN, DOC_USE_REP, doc_params
from .._utils._embedding import describe_rep
from .._utils._progress import DOC_PROGRESS_BAR
from ..models import SparseAutoencoder
from ..models._architectures import get_architecture
from ..models._defaults import k_candidates, sparsity_gain
from ..models._sae_model import registration_scope
from ..models._sae_saving import registry_n_dims


def _pc_loadings(adata: AnnData, use_rep: str | None, decoder: np.ndarray) -> np.ndarray | None:
    """Genes x features loadings when the embedding is ``X_pca`` with matching ``varm['PCs']``."""
    varm = getattr(adata, "varm", None)
    if use_rep != "X_pca" or varm is None or "PCs" not in varm:
        return None
    pcs = np.asarray(varm["PCs"])
    if pcs.shape[1] != decoder.shape[1]:
        logg.warning(
            f"varm['PCs'] has {pcs.shape[1]} components but X_pca has {decoder.shape[1]}; gene loadings not written."
        )
        return None
    return (pcs @ decoder.T).astype(np.float32)


def describe_metrics(metrics: dict[str, float]) -> str:
    """One line quoting the held-out FVU beside its baseline and the training FVU."""
    train = f"train FVU {metrics['train_fvu']:.3f}" if "train_fvu" in metrics else ""
    if not metrics["has_heldout"]:
        return f"no held-out cells; {train} (in-sample), mean L0 {metrics['train_mean_l0']:.1f}"
    return (
        f"held-out FVU {metrics['fvu']:.3f} (rank-k PCA {metrics['baseline_fvu_rank_k']:.3f}), "
        f"{train}, held-out mean L0 {metrics['heldout_mean_l0']:.1f}, "
        f"dead {metrics['train_dead_fraction']:.1%}"
    )


def _select_k(
    fit: Callable[[int], SparseAutoencoder], n_dims: int
) -> tuple[SparseAutoencoder, dict[str, Any]]:
    """Train at each candidate ``k``, largest first; keep the model whose sparsity buys most.

    The score is :func:`~scsae.models._defaults.sparsity_gain` on the held-out
    cells (SAE FVU over rank-``k`` PCA FVU, both held out). The search walks
    down from the largest candidate and stops at the first ``k`` that scores
    worse than the best so far: the curve falls while halving ``k`` costs less
    than it saves, and rises once cells need more features than ``k``.
    """
    rows: dict[str, list[float]] = {
        "k": [],
        "heldout_fvu": [],
        "baseline_fvu_rank_k": [],
        "score": [],
    }
    best, best_score = None, np.inf
    for k in k_candidates(n_dims):
        model = fit(k)
        metrics = model.get_metrics()
        score = sparsity_gain(metrics["fvu"], metrics["baseline_fvu_rank_k"])
        for name, value in zip(
            rows, (k, metrics["fvu"], metrics["baseline_fvu_rank_k"], score), strict=True
        ):
            rows[name].append(value)
        if best is not None and not score < best_score:
            break
        best, best_score = model, score
    selection = {
        "rule": "argmin held-out FVU / rank-k PCA FVU, k halved from the largest candidate",
        **{name: np.asarray(values) for name, values in rows.items()},
    }
    return best, selection


def _history_arrays(model: SparseAutoencoder) -> dict[str, np.ndarray]:
    return {key: df[key].to_numpy(dtype=np.float64) for key, df in model.history.items()}


def _train_and_encode(
    adata: AnnData,
    *,
    setup: dict[str, Any],
    model_kwargs: dict[str, Any],
    train_kwargs: dict[str, Any],
    inference: str,
    inference_kwargs: dict[str, Any] | None,
) -> tuple[SparseAutoencoder, tuple[Any, dict[str, float], np.ndarray, Any], dict | None]:
    """Register, build, train (selecting ``k`` when not given) and encode every cell.

    Writes nothing but the registration.
    """
    SparseAutoencoder.setup_anndata(adata, **setup)

    def train_with_k(k_fit: int | None) -> SparseAutoencoder:
        model = SparseAutoencoder(adata, **{**model_kwargs, "k": k_fit})
        model.train(**train_kwargs)
        return model

    select = (
        model_kwargs.get("k") is None
        and get_architecture(model_kwargs["architecture"]).uses_k
        and train_kwargs["train_size"] < 1
    )
    if select:
        registry = SparseAutoencoder._get_most_recent_anndata_manager(adata).registry
        model, selection = _select_k(train_with_k, registry_n_dims(registry))
        logg.info(
            f"    k {model.module.config.k} selected on held-out cells: "
            + ", ".join(
                f"k {kk} {score:.3f}"
                for kk, score in zip(selection["k"], selection["score"], strict=True)
            )
            + " (held-out FVU / rank-k PCA FVU)"
        )
    else:
        model, selection = train_with_k(model_kwargs.get("k")), None
    strategy = model.get_inference(inference, **(inference_kwargs or {}))
    activations, metrics, frequency = model.transform(inference=strategy)
    return model, (activations, metrics, frequency, strategy), selection


@doc_params(
    adata=DOC_ADATA,
    use_rep=DOC_USE_REP,
    arch=DOC_ARCHITECTURE,
    train=DOC_TRAIN,
    progress_bar=DOC_PROGRESS_BAR,
)
def sae(
    adata: AnnData,
    *,
    use_rep: str | None = "X_pca",
    layer: str | None = None,
    n_features: int | None = None,
    expansion_factor: float = 16,
    k: int | None = None,
    architecture: str = "topk",
    sparsity_coefficient: float | None = None,
    max_epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    train_size: float = 0.9,
    early_stopping: bool | None = None,
    early_stopping_patience: int | None = None,
    random_state: int = 0,
    inference: str = "amortized",
    inference_kwargs: dict[str, Any] | None = None,
    code_inference: str | None = None,
    accelerator: str = "auto",
    devices: int | str | list[int] = "auto",
    enable_progress_bar: bool | None = None,
    trainer_kwargs: dict[str, Any] | None = None,
    model_kwargs: dict[str, Any] | None = None,
    key_added: str = "X_sae",
    copy: bool = False,
    return_model: bool = False,
) -> AnnData | SparseAutoencoder | tuple[AnnData, SparseAutoencoder] | None:
    """Train a sparse autoencoder on an embedding and store its feature activations.

    Each cell's embedding is written as a sparse, non-negative combination of
    learned unit directions (features). Training follows current SAE practice
    (TopK with AuxK against dead features, centred and scaled inputs, unit-norm
    decoder rows, Adam with warm-up and decay); see :class:`~scsae.models.SparseAutoencoder`.
    Nothing is written unless training and encoding succeed.

    Parameters
    ----------
    {adata}
    {use_rep}
    {arch}
    {train}
    early_stopping_patience
        Epochs without improvement of the held-out FVU before stopping; `None`: a
        tenth of ``max_epochs``, at least 10.
    inference
        How codes are inferred from the trained dictionary: ``"amortized"`` (the SAE
        encoder) or another name in :data:`scsae.models.INFERENCE`.
    inference_kwargs
        Options of the inference strategy.
    code_inference
        Learn the dictionary by sparse coding: each training step infers codes with
        this strategy (e.g. ``"omp"``, ``"fista"``) and updates the decoder from them,
        while the encoder learns to amortise them. `None` trains the SAE end to end.
    accelerator
        Lightning accelerator (``"cpu"``, ``"gpu"``, ``"auto"``).
    devices
        Lightning devices.
    {progress_bar}
    trainer_kwargs
        Further arguments of :class:`lightning.pytorch.Trainer` (``strategy``, ``precision``...).
    model_kwargs
        Further fields of :class:`~scsae.models.SAEConfig` (``kernel``, ``aux_k``,
        ``aux_coefficient``, ``dead_after_cells``).
    key_added
        Key under which results are stored.
    copy
        Return a modified copy instead of writing into ``adata``.
    return_model
        Also return the trained :class:`~scsae.models.SparseAutoencoder`.

    Returns
    -------
    `None`, or the copy when ``copy=True``, or the model when ``return_model=True``
    (``(copy, model)`` when both). Sets the following fields:

    ``adata.obsm[key_added]`` : :class:`scipy.sparse.csr_matrix` (float32, cells x features)
        Feature activations in embedding units: ``bias + obsm[key_added] @ decoder``
        reconstructs the embedding.
    ``adata.obs[key_added + '_heldout']`` : `bool`
        Cells held out of training (named in ``params['heldout_key']``).
    ``adata.uns[key_added]['params']`` : `dict`
        Every setting that shaped the result (input, sizes, training, inference).
    ``adata.uns[key_added]['metrics']`` : `dict`
        Measured on the held-out cells: ``fvu`` (the headline),
        ``explained_variance``, ``baseline_fvu_rank_k`` (a rank-``k`` PCA fitted on
        the training cells, for comparison), ``heldout_mean_l0``,
        ``heldout_dead_fraction``, ``heldout_dense_fraction``, ``heldout_shrinkage``;
        the same on the training cells prefixed ``train_`` (``train_fvu``...);
        ``has_heldout``, ``n_heldout_cells``, ``n_train_cells``. See
        :meth:`~scsae.models.SparseAutoencoder.get_metrics`.
    ``adata.uns[key_added]['decoder']`` : :class:`numpy.ndarray` (features x dims)
        Unit-norm feature directions in embedding space.
    ``adata.uns[key_added]['bias']`` : :class:`numpy.ndarray` (dims)
        Reconstruction of a cell with no active feature.
    ``adata.uns[key_added]['feature_frequency']`` : :class:`numpy.ndarray` (features)
        Fraction of cells in which each feature is active.
    ``adata.uns[key_added]['k_selection']`` : `dict`
        Only when ``k`` was selected (``k=None`` with a TopK-type architecture and
        held-out cells; ``params['k_selected']``): the candidates ``k`` tried,
        largest first, their ``heldout_fvu``, ``baseline_fvu_rank_k`` and ``score``
        (the ratio of the two; the lowest wins) and the ``rule``.
    ``adata.uns[key_added]['history']`` : `dict` of arrays
        Per-epoch training metrics (``train_fvu``, ``validation_fvu``, ``train_l0``,
        ``dead_fraction``, ``lr``...).
    ``adata.varm[key_added + '_loadings']`` : :class:`numpy.ndarray` (genes x features)
        Only when ``use_rep='X_pca'`` and ``varm['PCs']`` exists: each feature's gene
        loadings, the decoder composed with the principal components. Genes without
        components (NaN rows of ``varm['PCs']``, e.g. genes left out of the PCA) keep
        NaN loadings.

    With ``return_model=True`` the data the model was trained on (the copy with
    ``copy=True``) keep its scvi-tools registration (``uns['_scvi_uuid']``,
    ``uns['_scvi_manager_uuid']``); otherwise the registration made here is removed.

    Examples
    --------
    >>> import scanpy as sc, scsae
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> scsae.tl.sae(adata, use_rep="X_pca")
    >>> adata.uns["X_sae"]["metrics"]["fvu"]
    """
    start = logg.info(f"training sparse autoencoder on {describe_rep(use_rep, layer)}")
    # with copy=True the copy is registered, trained on and written into: adata stays as it was
    target = adata.copy() if copy else adata
    # the registration is tl.sae's own business: undone on error, and kept only with the model
    with registration_scope(target, keep=return_model):
        model, outputs, selection = _train_and_encode(
            target,
            setup={"use_rep": use_rep, "layer": layer},
            model_kwargs={
                "n_features": n_features,
                "expansion_factor": expansion_factor,
                "k": k,
                "architecture": architecture,
                "sparsity_coefficient": sparsity_coefficient,
                "random_state": random_state,
                **(model_kwargs or {}),
            },
            train_kwargs={
                "max_epochs": max_epochs,
                "batch_size": batch_size,
                "lr": lr,
                "train_size": train_size,
                "early_stopping": early_stopping,
                "early_stopping_patience": early_stopping_patience,
                "code_inference": code_inference,
                "accelerator": accelerator,
                "devices": devices,
                "enable_progress_bar": enable_progress_bar,
                **(trainer_kwargs or {}),
            },
            inference=inference,
            inference_kwargs=inference_kwargs,
        )
        activations, metrics, frequency, strategy = outputs
        heldout_key = f"{key_added}_heldout"
        decoder = model.decoder
        loadings = _pc_loadings(target, use_rep, decoder)
        cfg = model.module.config
        params = {
            "use_rep": describe_rep(use_rep, layer) if layer is not None else (use_rep or "X"),
            "architecture": architecture,
            "n_features": cfg.n_features,
            "k": cfg.k,
            "expansion_factor": float(expansion_factor),
            **(
                {"sparsity_coefficient": float(model.module.activation.sparsity_coefficient)}
                if not model.module.activation.uses_k
                else {}
            ),
            **{key: value for key, value in (model_kwargs or {}).items() if key != "kernel"},
            **model.train_params_,
            "k_selected": selection is not None,
            **strategy.params(),
            "heldout_key": heldout_key,
            **({"layer": layer} if layer is not None else {}),
        }

        # all computation succeeded: only now write the results
        target.obsm[key_added] = activations
        target.obs[heldout_key] = model.heldout_mask_
        target.uns[key_added] = {
            "params": params,
            "metrics": metrics,
            "decoder": decoder.astype(np.float32),
            "bias": model.bias.astype(np.float32),
            "feature_frequency": frequency.astype(np.float32),
            "history": _history_arrays(model),
            **({"k_selection": selection} if selection is not None else {}),
        }
    fields = [f"'obsm[{key_added!r}]'", f"'obs[{heldout_key!r}]'", f"'uns[{key_added!r}]'"]
    if loadings is not None:
        target.varm[f"{key_added}_loadings"] = loadings
        fields.append(f"'varm[{key_added + '_loadings'!r}]'")
    logg.info(
        f"    finished: {describe_metrics(metrics)}",
        time=start,
        deep="added\n    " + ", ".join(fields),
    )
    if copy and return_model:
        return target, model
    if return_model:
        return model
    return target if copy else None
