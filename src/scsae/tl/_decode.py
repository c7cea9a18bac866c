"""``tl.decode_features`` and ``tl.steer``: SAE features through the embedding's own generative model.

The SAE reconstructs a cell's embedding as ``bias + activations @ decoder``
(activations in embedding units, :func:`scsae.tl.sae`), so raising a feature's
activation by ``s`` moves the cell's latent by ``s * decoder[feature]``. When
the embedding is the latent of an scvi-tools model, that model's generative
network turns the moved latent into expression: a feature's effect on genes
without assuming the embedding is linear in them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scanpy import logging as logg

from .._utils._docs import doc_params
from .._utils._features import get_activations, get_sae_result

#: cells re-encoded to check that the SAE's embedding is the model's latent
N_CHECK = 64
#: R^2 of the stored embedding on the model's re-encoded latent below which it is not that latent
MIN_R2 = 0.8

DOC_MODEL = """\
model
    Trained scvi-tools model whose latent the SAE was trained on (:class:`scvi.model.SCVI`,
    :class:`scvi.model.LinearSCVI`, or any model whose module has the standard
    ``inference`` / ``generative`` path), set up on ``adata``."""


def _check_model(model: Any) -> Any:
    module = getattr(model, "module", None)
    needed = ("inference", "generative", "_get_inference_input", "_get_generative_input")
    if module is None or not all(hasattr(module, name) for name in needed):
        msg = (
            f"model must be a trained scvi-tools model with the standard inference/generative "
            f"path (SCVI, LinearSCVI...); got {type(model).__name__}."
        )
        raise TypeError(msg)
    if not getattr(model, "is_trained", True):
        msg = "The scvi-tools model is not trained; call model.train() first."
        raise ValueError(msg)
    return module


def _cell_indices(adata: AnnData, cells: Any, n_cells: int | None, random_state: int) -> np.ndarray:
    """Sorted integer rows of the reference cells: named, masked, indexed, or a seeded sample."""
    if cells is None:
        if n_cells is None or n_cells >= adata.n_obs:
            return np.arange(adata.n_obs)
        rng = np.random.default_rng(random_state)
        return np.sort(rng.choice(adata.n_obs, size=n_cells, replace=False))
    values = np.asarray(cells)
    if values.dtype == bool:
        if values.shape != (adata.n_obs,):
            msg = f"a boolean cells mask needs {adata.n_obs} entries; got {values.shape}."
            raise ValueError(msg)
        idx = np.flatnonzero(values)
    elif np.issubdtype(values.dtype, np.integer):
        idx = values.ravel()
        if idx.size and (idx.min() < 0 or idx.max() >= adata.n_obs):
            msg = f"cell indices must lie in [0, {adata.n_obs}); got {idx.min()}..{idx.max()}."
            raise ValueError(msg)
    else:
        idx = adata.obs_names.get_indexer(values.astype(str).ravel())
        if (idx < 0).any():
            missing = values.astype(str).ravel()[idx < 0]
            msg = f"{missing.size} cells are not in obs_names (e.g. {list(missing[:3])})."
            raise KeyError(msg)
    if idx.size == 0:
        msg = "cells selects no cell."
        raise ValueError(msg)
    return np.unique(idx)


def _latent(adata: AnnData, key: str, module: Any) -> tuple[np.ndarray, np.ndarray, str]:
    """The SAE's decoder and its input embedding, checked against the model's latent width."""
    sae_uns = get_sae_result(adata, key)
    decoder = np.asarray(sae_uns["decoder"], dtype=np.float32)
    use_rep = str(sae_uns.get("params", {}).get("use_rep", ""))
    if use_rep not in adata.obsm:
        msg = (
            f"The SAE under {key!r} was trained on {use_rep!r}, which is not in obsm "
            f"({list(adata.obsm.keys())}); decoding needs the model's latent there."
        )
        raise KeyError(msg)
    n_latent = getattr(module, "n_latent", None)
    if n_latent is not None and n_latent != decoder.shape[1]:
        msg = (
            f"The model's latent has {n_latent} dimensions but the SAE under {key!r} was trained "
            f"on {decoder.shape[1]} ({use_rep!r}); train the SAE on this model's latent."
        )
        raise ValueError(msg)
    emb = adata.obsm[use_rep]
    emb = emb.to_numpy() if isinstance(emb, pd.DataFrame) else np.asarray(emb)
    return decoder, emb.astype(np.float32), use_rep


def _check_is_latent(model: Any, adata: AnnData, emb: np.ndarray, use_rep: str, seed: int) -> float:
    """Re-encode a few cells; the stored embedding must match the model's latent mean."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(adata.n_obs, size=min(N_CHECK, adata.n_obs), replace=False))
    z = np.asarray(model.get_latent_representation(adata, indices=rows), dtype=np.float64)
    resid = ((emb[rows] - z) ** 2).sum()
    spread = ((z - z.mean(0)) ** 2).sum()
    r2 = 1 - resid / spread if spread > 0 else -np.inf
    if r2 < MIN_R2:
        msg = (
            f"obsm[{use_rep!r}] is not this model's latent: re-encoding {rows.size} cells gives "
            f"R^2 = {r2:.2f} (< {MIN_R2}). Pass the model the SAE's embedding came from "
            "(or check_latent=False to skip this check)."
        )
        raise ValueError(msg)
    return float(r2)


@contextmanager
def _seeded(random_state: int) -> Iterator[None]:
    """Seed torch for the model's sampling (latent, library, counts), restoring the user's stream."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        yield


class _Decoder:
    """Decodes latents of fixed reference cells, reusing their library size and covariates."""

    def __init__(self, model: Any, adata: AnnData, idx: np.ndarray, batch_size: int):
        import torch

        self.torch = torch
        self.module = model.module
        self.module.eval()
        self.device = model.device
        self.batches = []
        loader = model._make_data_loader(adata=adata, indices=idx, batch_size=batch_size)
        start = 0
        with torch.no_grad():
            for tensors in loader:
                inf = self.module.inference(**self.module._get_inference_input(tensors))
                n = int(inf["library"].shape[0])
                self.batches.append((slice(start, start + n), tensors, inf))
                start += n

    def __call__(self, z: np.ndarray) -> list[tuple[slice, Any]]:
        """The generative distribution ``px`` of each batch with latents ``z`` (cells x dims)."""
        torch = self.torch
        out = []
        with torch.no_grad():
            for sl, tensors, inf in self.batches:
                moved = {
                    **inf,
                    "z": torch.as_tensor(z[sl], dtype=torch.float32, device=self.device),
                }
                gen = self.module.generative(**self.module._get_generative_input(tensors, moved))
                out.append((sl, gen["px"]))
        return out


def _log2_scale(px_list: list[tuple[slice, Any]], n: int, n_genes: int) -> np.ndarray:
    """log2 of the decoded normalised expression (library fixed), cells x genes."""
    out = np.empty((n, n_genes), dtype=np.float64)
    for sl, px in px_list:
        scale = getattr(px, "scale", None)
        scale = px.mean if scale is None else scale
        out[sl] = np.log2(scale.cpu().numpy().astype(np.float64) + 1e-12)
    return out


def _null_scores(
    decode: _Decoder,
    z0: np.ndarray,
    base: np.ndarray,
    strengths: np.ndarray,
    n_null: int,
    random_state: int,
) -> np.ndarray | None:
    """Genes x ``n_null`` scores of random unit latent directions at features' strengths."""
    if n_null <= 0 or strengths.size == 0:
        return None
    rng = np.random.default_rng(random_state)
    directions = rng.normal(size=(n_null, z0.shape[1]))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    sizes = rng.choice(strengths, size=n_null)
    null = np.empty((base.shape[1], n_null), dtype=np.float32)
    for i in range(n_null):
        moved = _log2_scale(decode(z0 + sizes[i] * directions[i]), *base.shape)
        null[:, i] = (moved - base).mean(0)
    return null


def _typical_strength(adata: AnnData, key: str) -> np.ndarray:
    """Each feature's mean activation over the cells where it is active (0 if dead)."""
    acts = get_activations(adata, key)
    n_active = np.diff(acts.indptr)
    total = np.asarray(acts.sum(axis=0)).ravel()
    return np.divide(total, n_active, out=np.zeros_like(total), where=n_active > 0)


@doc_params(model=DOC_MODEL)
def decode_features(
    adata: AnnData,
    model: Any,
    *,
    key: str = "X_sae",
    strength: float | None = None,
    cells: Any = None,
    n_cells: int = 256,
    n_null: int = 100,
    check_latent: bool = True,
    batch_size: int = 1024,
    random_state: int = 0,
    key_added: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Gene effects of every SAE feature, decoded through the embedding's generative model.

    For each reference cell and feature, ``strength`` times the feature's decoder
    row is added to the cell's latent (the SAE's input embedding, in its own
    units), and the moved latent is decoded by the model's generative network
    with the cell's own library size and covariates. The score of a gene is the
    log2 fold change of its decoded normalised expression against the undisturbed
    decode, averaged over the reference cells. Unlike the ``"association"`` route
    of :func:`~scsae.tl.feature_genes` this is causal within the model: it says
    what the feature does to expression, not which genes co-vary with it.

    Results are written in the format of :func:`~scsae.tl.feature_genes`, so
    :func:`~scsae.tl.link_pathways` and :func:`~scsae.tl.feature_table` read them
    (``feature_genes(adata, method="decoder", model=model)`` calls this function).

    Parameters
    ----------
    adata
        AnnData processed by :func:`scsae.tl.sae` on the model's latent (e.g.
        ``obsm['X_scVI']``), with the counts the model was set up on.
    {model}
    key
        ``key_added`` of :func:`scsae.tl.sae`.
    strength
        Activation added to each feature, in the SAE's activation units (those of
        ``obsm[key]``). `None` uses each feature's mean activation over the cells
        where it is active: a typical "on" state, so scores of features of
        different sizes compare.
    cells
        Reference cells: obs names, integer positions or a boolean mask. `None`: a
        seeded sample of ``n_cells`` cells.
    n_cells
        Size of the sample when ``cells`` is `None`.
    n_null
        Random unit directions of the latent decoded the same way (each at the
        strength of a randomly chosen feature): the null that
        :func:`~scsae.tl.link_pathways` compares each feature's pathway scores with.
        0 skips them (then use ``link_pathways(n_perm=0)``).
    check_latent
        Re-encode a few cells with ``model`` and require that the SAE's embedding
        matches the model's latent mean (R^2 >= 0.8).
    batch_size
        Cells per forward pass.
    random_state
        Seed of the cell sample and the re-encoded cells.
    key_added
        Base key of the results; default ``key + '_genes'`` (as
        :func:`~scsae.tl.feature_genes`).
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    `None`, or the copy when ``copy=True``. Sets

    ``adata.varm[key_added]`` : :class:`numpy.ndarray` (genes x features, float32)
        Mean log2 fold change of decoded expression when the feature is added.
    ``adata.varm[key_added + '_null']`` : :class:`numpy.ndarray` (genes x ``n_null``)
        Mean log2 fold changes of the random directions (only when ``n_null > 0``).
    ``adata.uns[key_added]['universe']`` : :class:`numpy.ndarray` of bool (genes)
        Every gene: the model decodes them all.
    ``adata.uns[key_added]['params']`` : `dict`
        ``key``, ``method`` (``"decoder"``), ``n_null``, ``source`` (model class), ``use_rep``,
        ``strength`` (`None` -> -1), ``n_cells``, ``random_state``, ``varm_on``
        (``"var"``), ``latent_r2`` (of the check; NaN when skipped).
    ``adata.uns[key_added]['strength']`` : :class:`numpy.ndarray` (features)
        Activation added to each feature.
    ``adata.uns[key_added]['tested']`` : :class:`numpy.ndarray` of bool (features)
        False for dead features (no strength, scores 0).

    Examples
    --------
    >>> scvi.model.SCVI.setup_anndata(adata)
    >>> vae = scvi.model.SCVI(adata)
    >>> vae.train()
    >>> adata.obsm["X_scVI"] = vae.get_latent_representation()
    >>> scsae.tl.sae(adata, use_rep="X_scVI")
    >>> scsae.tl.decode_features(adata, vae)
    >>> scsae.tl.link_pathways(adata, net)  # reads varm['X_sae_genes']
    """
    module = _check_model(model)
    decoder, emb, use_rep = _latent(adata, key, module)
    idx = _cell_indices(adata, cells, n_cells, random_state)
    if strength is None:
        strengths = _typical_strength(adata, key)
    else:
        strengths = np.full(decoder.shape[0], float(strength))
    start = logg.info(f"decoding {decoder.shape[0]} features through {type(model).__name__}")
    scores = np.zeros((adata.n_vars, decoder.shape[0]), dtype=np.float32)
    tested = strengths != 0
    with _seeded(random_state):
        r2 = _check_is_latent(model, adata, emb, use_rep, random_state) if check_latent else np.nan
        decode = _Decoder(model, adata, idx, batch_size)
        z0 = emb[idx]
        base = _log2_scale(decode(z0), idx.size, adata.n_vars)
        for j in np.flatnonzero(tested):
            moved = _log2_scale(decode(z0 + strengths[j] * decoder[j]), idx.size, adata.n_vars)
            scores[:, j] = (moved - base).mean(0)
        null = _null_scores(decode, z0, base, strengths[tested], n_null, random_state)
    params = {
        "key": key,
        "method": "decoder",
        "n_null": int(n_null),
        "source": type(model).__name__,
        "use_rep": use_rep,
        "strength": -1.0 if strength is None else float(strength),
        "n_cells": int(idx.size),
        "random_state": int(random_state),
        "varm_on": "var",
        "latent_r2": float(r2),
    }
    key_added = key_added or f"{key}_genes"
    target = adata.copy() if copy else adata
    target.varm[key_added] = scores
    for suffix in ("_pvals", "_pvals_adj", "_null"):  # stale results of another run
        target.varm.pop(key_added + suffix, None)
    if null is not None:
        target.varm[key_added + "_null"] = null
    target.uns[key_added] = {
        "params": params,
        "universe": np.ones(adata.n_vars, dtype=bool),
        "strength": strengths.astype(np.float32),
        "tested": tested,
    }
    logg.info(
        "    finished",
        time=start,
        deep=f"added\n    'varm[{key_added!r}]', 'uns[{key_added!r}]'",
    )
    return target if copy else None


@doc_params(model=DOC_MODEL)
def steer(
    adata: AnnData,
    model: Any,
    *,
    feature: int | Sequence[int],
    strength: float | Sequence[float],
    key: str = "X_sae",
    cells: Any = None,
    check_latent: bool = True,
    batch_size: int = 1024,
    random_state: int = 0,
) -> AnnData:
    """Counterfactual cells with SAE features turned up or down, decoded by the embedding's model.

    Each reference cell's latent is moved by ``strength`` times the feature's
    decoder row (several features: the sum of their moves) and decoded with the
    cell's own library size and covariates. Negative strengths turn a feature
    down; the move is additive, so it can go past "off" if ``-strength`` exceeds
    the cell's activation.

    Parameters
    ----------
    adata
        AnnData processed by :func:`scsae.tl.sae` on the model's latent.
    {model}
    feature
        Feature index (or indices) to move.
    strength
        Activation added (negative: removed), in the units of ``obsm[key]``; one value
        per feature, or one for all.
    key
        ``key_added`` of :func:`scsae.tl.sae`.
    cells
        Reference cells: obs names, integer positions or a boolean mask; `None`: all.
    check_latent
        Re-encode a few cells and require that the SAE's embedding is the model's latent.
    batch_size
        Cells per forward pass.
    random_state
        Seed of the sampled counts and the re-encoded cells.

    Returns
    -------
    :class:`~anndata.AnnData` of the counterfactual cells (the reference cells' ``obs``
    and ``var``) with

    ``X`` : :class:`numpy.ndarray` (float32)
        Decoded expected counts at each cell's library size.
    ``layers['counts']``
        Counts sampled from the model's likelihood (seeded).
    ``layers['normalized']``
        Decoded normalised expression (the model's ``scale``, library fixed).
    ``obsm[use_rep]``
        The moved latents.
    ``uns['steer']``
        ``key``, ``use_rep``, ``feature``, ``strength``, ``model`` (class name).

    Examples
    --------
    >>> ctrl = adata.obs["target"] == "non-targeting"
    >>> cf = scsae.tl.steer(adata, vae, feature=12, strength=-2.0, cells=ctrl.to_numpy())
    """
    module = _check_model(model)
    decoder, emb, use_rep = _latent(adata, key, module)
    feats = np.atleast_1d(np.asarray(feature))
    if (
        not np.issubdtype(feats.dtype, np.integer)
        or ((feats < 0) | (feats >= decoder.shape[0])).any()
    ):
        msg = f"feature={feature!r}: features are integers in [0, {decoder.shape[0]})."
        raise ValueError(msg)
    values = np.broadcast_to(np.asarray(strength, dtype=np.float64), feats.shape)
    if np.ndim(strength) and np.size(strength) != feats.size:
        msg = f"strength has {np.size(strength)} values for {feats.size} features."
        raise ValueError(msg)
    idx = _cell_indices(adata, cells, None, random_state)
    move = (values[:, None] * decoder[feats]).sum(0).astype(np.float32)
    z = emb[idx] + move
    expected = np.empty((idx.size, adata.n_vars), dtype=np.float32)
    scale = np.empty_like(expected)
    counts = np.empty_like(expected)
    with _seeded(random_state):
        if check_latent:
            _check_is_latent(model, adata, emb, use_rep, random_state)
        for sl, px in _Decoder(model, adata, idx, batch_size)(z):
            expected[sl] = px.mean.cpu().numpy()
            scale[sl] = (px.scale if hasattr(px, "scale") else px.mean).cpu().numpy()
            counts[sl] = px.sample().cpu().numpy()
    out = AnnData(
        X=expected,
        obs=adata.obs.iloc[idx].copy(),
        var=adata.var.copy(),
        layers={"counts": counts, "normalized": scale},
        obsm={use_rep: z},
    )
    out.uns["steer"] = {
        "key": key,
        "use_rep": use_rep,
        "feature": feats.astype(np.int64),
        "strength": values.astype(np.float64),
        "model": type(model).__name__,
    }
    return out
