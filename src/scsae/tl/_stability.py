"""``tl.feature_stability``: whether other seeds find the same features."""

from __future__ import annotations

import numpy as np
from anndata import AnnData
from scanpy import logging as logg

from .._utils._features import get_sae_result
from ..models import SparseAutoencoder
from ..models._sae_model import registration_scope

#: SAEConfig fields that ``tl.sae`` records in ``params`` and a retraining reuses
_CONFIG_FIELDS = ("aux_k", "aux_coefficient", "dead_after_cells", "prefix_sizes")


def matched_cosines(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Cosine of each reference decoder row with its one-to-one match in ``other``.

    Rows are paired by the Hungarian algorithm
    (:func:`scipy.optimize.linear_sum_assignment`) on the signed cosines, so no
    row of ``other`` stands in for two reference features.
    """
    from scipy.optimize import linear_sum_assignment

    def unit(m: np.ndarray) -> np.ndarray:
        m = np.asarray(m, dtype=np.float64)
        return m / np.linalg.norm(m, axis=1, keepdims=True).clip(1e-12)

    cos = unit(reference) @ unit(other).T
    rows, cols = linear_sum_assignment(cos, maximize=True)
    out = np.zeros(reference.shape[0])  # unmatched (other has fewer rows): 0
    out[rows] = cos[rows, cols]
    return out


def feature_stability(
    adata: AnnData,
    *,
    key: str = "X_sae",
    n_seeds: int = 2,
    threshold: float = 0.9,
    copy: bool = False,
) -> AnnData | None:
    """Retrain the SAE with other seeds and find each feature again.

    Trains ``n_seeds`` more SAEs with the settings recorded in
    ``adata.uns[key]['params']`` (same input, size, ``k`` and training, seeds
    ``random_state + 1``...), matches their decoders one to one with this one's
    (Hungarian matching of decoder cosines,
    :func:`scipy.optimize.linear_sum_assignment`) and keeps, per feature, its cosine with its match in
    every other seed. A feature is stable when it is found again in all of them
    at cosine ``>= threshold``; unstable features are flagged, not removed.

    Parameters
    ----------
    adata
        Data processed by :func:`scsae.tl.sae`.
    key
        ``key_added`` of :func:`scsae.tl.sae`.
    n_seeds
        Other seeds to train.
    threshold
        Cosine from which a feature counts as found again.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    `None`, or the copy when ``copy=True``. Sets
    ``adata.uns[key]['stability']`` : `dict`, with

    ``cosine`` : :class:`numpy.ndarray` (features x ``n_seeds``)
        Cosine of each feature with its match in each other seed.
    ``stability`` : :class:`numpy.ndarray` (features)
        Its lowest cosine over the other seeds (also the ``stability`` column of
        :func:`~scsae.tl.feature_table`, beside ``stable``).
    ``stable`` : :class:`numpy.ndarray` of bool (features)
        ``stability >= threshold``.
    ``stable_fraction`` : `float`
        Share of stable features.
    ``params`` : `dict`
        ``n_seeds``, ``seeds``, ``threshold``.
    """
    result = get_sae_result(adata, key)
    if n_seeds < 1:
        msg = f"n_seeds={n_seeds} must be at least 1."
        raise ValueError(msg)
    if not 0 < threshold <= 1:
        msg = f"threshold={threshold} must be in (0, 1]."
        raise ValueError(msg)
    params = result["params"]
    layer = params.get("layer")
    use_rep = None if layer is not None else params["use_rep"]
    start = logg.info(f"retraining {n_seeds} SAEs with other seeds")
    seeds = [int(params["random_state"]) + i for i in range(1, n_seeds + 1)]
    # the registration is only for retraining here: leave adata.uns as it was
    with registration_scope(adata, keep=False):
        SparseAutoencoder.setup_anndata(adata, use_rep=use_rep, layer=layer, check=False)
        cosines = []
        for seed in seeds:
            model = SparseAutoencoder(
                adata,
                n_features=int(params["n_features"]),
                k=int(params["k"]),
                architecture=str(params["architecture"]),
                sparsity_coefficient=params.get("sparsity_coefficient"),
                random_state=seed,
                **{f: params[f] for f in _CONFIG_FIELDS if f in params},
            )
            model.train(
                max_epochs=int(params["max_epochs"]),
                batch_size=int(params["batch_size"]),
                lr=float(params["lr"]),
                train_size=float(params["train_size"]),
                early_stopping=bool(params["early_stopping"]),
                enable_progress_bar=False,
            )
            cosines.append(matched_cosines(result["decoder"], model.decoder))
    cosine = np.stack(cosines, axis=1).astype(np.float32)
    stability = cosine.min(axis=1)
    stable = stability >= threshold
    target = adata.copy() if copy else adata
    target.uns[key]["stability"] = {
        "cosine": cosine,
        "stability": stability,
        "stable": stable,
        "stable_fraction": float(stable.mean()),
        "params": {"n_seeds": n_seeds, "seeds": seeds, "threshold": float(threshold)},
    }
    logg.info(
        f"    finished: {stable.mean():.0%} of features found again at cosine >= {threshold:g} "
        f"in all {n_seeds} other seeds",
        time=start,
        deep=f"added\n    'uns[{key!r}]['stability']'",
    )
    return target if copy else None
