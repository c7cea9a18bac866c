"""Sparse codes mixed through a known dictionary: ground truth for SAE recovery."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

#: scores held in memory at once while choosing active features (float64 values)
CHUNK_ENTRIES = 2**22

Magnitude = Literal["uniform", "exponential", "lognormal", "constant"]


def _check(condition: bool, msg: str) -> None:  # noqa: FBT001
    if not condition:
        raise ValueError(msg)


def _random_directions(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    w = rng.standard_normal((n, d))
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    return w


def _magnitudes(rng: np.random.Generator, size: int, kind: Magnitude, scale: float) -> np.ndarray:
    if kind == "uniform":
        return rng.uniform(0.5 * scale, 1.5 * scale, size)
    if kind == "exponential":
        return rng.exponential(scale, size)
    if kind == "lognormal":
        return scale * rng.lognormal(0.0, 0.5, size)
    return np.full(size, float(scale))


def _choose_by_redraw(
    rng: np.random.Generator, weights: np.ndarray, counts: np.ndarray, *, max_rounds: int = 50
) -> tuple[np.ndarray, np.ndarray] | None:
    """Fast path for a fixed count ``k`` and independent features.

    Draws ``k`` features with replacement and redraws the cells whose draw
    repeated a feature, which samples ``k``-subsets with probability
    proportional to the product of their weights. Returns ``None`` when
    repeats stay too frequent (``k`` close to the number of features).
    """
    n_obs, k = counts.shape[0], int(counts[0])
    cdf = np.cumsum(weights / weights.sum())
    cdf[-1] = 1.0
    out = np.empty((n_obs, k), dtype=np.int32)
    todo = np.arange(n_obs)
    for _ in range(max_rounds):
        draw = np.searchsorted(cdf, rng.random((todo.shape[0], k)), side="right")
        draw = np.minimum(draw, weights.shape[0] - 1).astype(np.int32)
        draw.sort(axis=1)
        repeated = (draw[:, 1:] == draw[:, :-1]).any(axis=1) if k > 1 else np.zeros(len(todo), bool)
        out[todo[~repeated]] = draw[~repeated]
        todo = todo[repeated]
        if todo.shape[0] == 0:
            indptr = np.arange(0, n_obs * k + 1, k, dtype=np.int64)
            return indptr, out.ravel()
    return None


def _choose_active(
    rng: np.random.Generator,
    n_obs: int,
    log_weights: np.ndarray,
    counts: np.ndarray,
    modules: np.ndarray | None,
    correlation: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Per cell, ``counts[i]`` distinct features drawn without replacement.

    A fixed small count without correlations takes :func:`_choose_by_redraw`;
    otherwise this uses the exponential race: feature ``j`` arrives at time ``E_j / w_j`` with
    ``E_j ~ Exp(1)``; the first ``c`` arrivals are a weighted draw without
    replacement. Correlated modules scale the weights of a cell's features by
    a shared log-normal factor per module. Returns CSR ``indptr`` and ``indices``.
    """
    n_features = log_weights.shape[0]
    fixed = n_obs > 0 and bool((counts == counts[0]).all())
    if fixed and (modules is None or correlation == 0) and 0 < 4 * counts[0] <= n_features:
        fast = _choose_by_redraw(rng, np.exp(log_weights - log_weights.max()), counts)
        if fast is not None:
            return fast
    indptr = np.zeros(n_obs + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    indices = np.empty(indptr[-1], dtype=np.int32)
    chunk = max(1, CHUNK_ENTRIES // n_features)
    k_max = int(counts.max()) if n_obs else 0
    for start in range(0, n_obs, chunk):
        stop = min(n_obs, start + chunk)
        m = stop - start
        log_w = np.broadcast_to(log_weights, (m, n_features))
        if modules is not None and correlation > 0:
            n_modules = int(modules.max()) + 1
            shared = correlation * rng.standard_normal((m, n_modules))
            log_w = log_w + shared[:, modules]
        times = np.log(rng.standard_exponential((m, n_features))) - log_w
        if k_max == 0:
            continue
        if k_max < n_features:
            top = np.argpartition(times, k_max - 1, axis=1)[:, :k_max]
        else:
            top = np.broadcast_to(np.arange(n_features), (m, n_features)).copy()
        # order the k_max candidates by arrival so a cell with c < k_max keeps the first c
        order = np.argsort(np.take_along_axis(times, top, axis=1), axis=1)
        top = np.take_along_axis(top, order, axis=1)
        c = counts[start:stop]
        keep = np.arange(k_max)[None, :] < c[:, None]
        indices[indptr[start] : indptr[stop]] = top[keep]
    return indptr, indices


def simulate_superposition(
    n_obs: int = 10_000,
    n_dims: int = 32,
    n_features: int = 256,
    *,
    n_active: float = 4,
    active_distribution: Literal["fixed", "poisson"] = "fixed",
    magnitude: Magnitude = "uniform",
    magnitude_scale: float = 1.0,
    frequency_exponent: float = 0.0,
    correlation: float = 0.0,
    n_modules: int = 16,
    n_children: int = 0,
    child_probability: float = 1.0,
    child_similarity: float = 0.0,
    noise: float = 0.01,
    key_added: str = "X_emb",
    random_state: int = 0,
) -> AnnData:
    """Simulate an embedding in which sparse features sit in superposition.

    Generative process, per cell ``i``:

    1. Draw how many features are active: exactly ``n_active``
       (``active_distribution="fixed"``) or ``Poisson(n_active)`` clipped to
       the number of (top-level) features.
    2. Choose which, without replacement, with base weights
       ``w_j ∝ (j + 1) ** -frequency_exponent`` (0: all features equally
       frequent; 1: Zipf). With ``correlation > 0`` features are split into
       ``n_modules`` modules and every cell multiplies the weights of module
       ``m`` by ``exp(correlation * z_im)``, ``z_im ~ N(0, 1)``, so features of
       one module tend to fire together.
    3. Give each active feature a positive magnitude ``a``: ``"uniform"``
       on ``[0.5, 1.5] * magnitude_scale``, ``"exponential"`` with mean
       ``magnitude_scale``, ``"lognormal"`` with median ``magnitude_scale`` and
       log-sd 0.5, or ``"constant"``.
    4. Hierarchy (``n_children > 0``): the first ``n_features // (1 + n_children)``
       features are parents; the rest are their children, ``n_children`` each.
       Steps 1-2 choose among parents only; each active parent then switches on
       one of its children, uniformly, with probability ``child_probability``.
       A child's direction has cosine about ``child_similarity`` with its parent.
    5. Observe ``x_i = sum_j a_ij d_j + eps_i`` with unit-norm dictionary rows
       ``d_j`` drawn uniformly on the sphere and ``eps_i ~ N(0, noise^2 I)``.

    Codes are generated sparse (CSR) and mixed in chunks, so a million cells
    take seconds and memory stays near the size of the outputs.

    Parameters
    ----------
    n_obs
        Number of cells.
    n_dims
        Dimensions of the observed embedding.
    n_features
        Number of true features (dictionary rows), typically ``> n_dims``.
    n_active
        Active features per cell (exact, or the Poisson mean). With a
        hierarchy this counts parents; active children come on top.
    active_distribution
        ``"fixed"`` or ``"poisson"``.
    magnitude
        Distribution of activation magnitudes (see above).
    magnitude_scale
        Scale of the magnitudes.
    frequency_exponent
        Power-law exponent of feature frequencies (0 for uniform).
    correlation
        Standard deviation of the shared log-weight of a module (0: independent).
    n_modules
        Number of co-activation modules when ``correlation > 0``.
    n_children
        Children per parent feature (0: no hierarchy).
    child_probability
        Probability that an active parent switches on one of its children.
    child_similarity
        Cosine between a child's direction and its parent's (0: unrelated).
    noise
        Standard deviation of Gaussian noise per embedding dimension.
    key_added
        ``obsm`` key of the observed embedding.
    random_state
        Seed; the same seed gives the same data.

    Returns
    -------
    AnnData with ``n_obs`` cells and no genes, holding

    ``obsm[key_added]``
        Observed embedding, cells x ``n_dims``, float32.
    ``obsm['true_codes']``
        True activations, CSR cells x ``n_features``, float32.
    ``obs['n_active']``
        Number of active true features per cell.
    ``uns['simulation']['true_dictionary']``
        Unit-norm true feature directions, ``n_features`` x ``n_dims``.
    ``uns['simulation']['feature_frequency']``
        Fraction of cells in which each true feature is active.
    ``uns['simulation']['parent']``
        Index of each feature's parent (-1 for none).
    ``uns['simulation']['module']``
        Co-activation module of each top-level feature (-1 without correlations
        and for children).
    ``uns['simulation']['noise_fvu']``
        Fraction of the embedding's variance that is noise: the FVU floor.
    ``uns['simulation']['params']``
        Every argument above.

    Examples
    --------
    >>> import scsae
    >>> adata = scsae.datasets.simulate_superposition(20_000, 32, 256, n_active=4)
    >>> adata.obsm["X_emb"].shape, adata.obsm["true_codes"].shape
    ((20000, 32), (20000, 256))
    """
    params = {
        "n_obs": n_obs,
        "n_dims": n_dims,
        "n_features": n_features,
        "n_active": n_active,
        "active_distribution": active_distribution,
        "magnitude": magnitude,
        "magnitude_scale": magnitude_scale,
        "frequency_exponent": frequency_exponent,
        "correlation": correlation,
        "n_modules": n_modules,
        "n_children": n_children,
        "child_probability": child_probability,
        "child_similarity": child_similarity,
        "noise": noise,
        "key_added": key_added,
        "random_state": random_state,
    }
    _check(n_obs >= 1, f"n_obs={n_obs} must be at least 1.")
    _check(n_dims >= 1, f"n_dims={n_dims} must be at least 1.")
    _check(n_features >= 1, f"n_features={n_features} must be at least 1.")
    _check(
        active_distribution in ("fixed", "poisson"),
        f"active_distribution={active_distribution!r}; use 'fixed' or 'poisson'.",
    )
    _check(
        magnitude in ("uniform", "exponential", "lognormal", "constant"),
        f"magnitude={magnitude!r}; use 'uniform', 'exponential', 'lognormal' or 'constant'.",
    )
    _check(magnitude_scale > 0, f"magnitude_scale={magnitude_scale} must be positive.")
    _check(noise >= 0, f"noise={noise} must be non-negative.")
    _check(correlation >= 0, f"correlation={correlation} must be non-negative.")
    _check(n_modules >= 1, f"n_modules={n_modules} must be at least 1.")
    _check(n_children >= 0, f"n_children={n_children} must be non-negative.")
    _check(0 <= child_probability <= 1, f"child_probability={child_probability} must be in [0, 1].")
    _check(0 <= child_similarity < 1, f"child_similarity={child_similarity} must be in [0, 1).")
    n_parents = n_features // (1 + n_children) if n_children else n_features
    _check(
        n_parents >= 1,
        f"n_features={n_features} is too small for n_children={n_children}; "
        f"use n_features >= {1 + n_children}.",
    )
    if active_distribution == "fixed":
        _check(
            float(n_active).is_integer() and 0 <= n_active <= n_parents,
            f"n_active={n_active} must be an integer between 0 and {n_parents} "
            "(the number of top-level features).",
        )
    else:
        _check(n_active >= 0, f"n_active={n_active} must be non-negative.")

    rng = np.random.default_rng(random_state)

    # dictionary (children leaning towards their parents) and the hierarchy
    dictionary = _random_directions(rng, n_features, n_dims)
    parent = np.full(n_features, -1, dtype=np.int64)
    if n_children:
        children = np.arange(n_parents, n_features)
        parent[children] = (children - n_parents) % n_parents
        s = child_similarity
        mixed = s * dictionary[parent[children]] + np.sqrt(1 - s**2) * dictionary[children]
        dictionary[children] = mixed / np.linalg.norm(mixed, axis=1, keepdims=True)

    # how many and which top-level features fire
    if active_distribution == "fixed":
        counts = np.full(n_obs, int(n_active), dtype=np.int64)
    else:
        counts = np.minimum(rng.poisson(n_active, n_obs), n_parents)
    log_weights = -frequency_exponent * np.log(np.arange(1, n_parents + 1))
    modules = rng.integers(0, n_modules, n_parents) if correlation > 0 else None
    indptr, indices = _choose_active(rng, n_obs, log_weights, counts, modules, correlation)
    module = np.full(n_features, -1, dtype=np.int64)
    if modules is not None:
        module[:n_parents] = modules

    if n_children and child_probability > 0:
        # each active parent switches on one child with probability child_probability
        on = rng.random(indices.shape[0]) < child_probability
        n_kids = np.bincount(parent[n_parents:], minlength=n_parents)
        chosen = indices[on]
        child = n_parents + chosen + n_parents * rng.integers(0, n_kids[chosen])
        rows = np.repeat(np.arange(n_obs), np.diff(indptr))
        rows = np.concatenate([rows, rows[on]])
        cols = np.concatenate([indices, child.astype(np.int32)])
        order = np.lexsort((cols, rows))
        rows, indices = rows[order], cols[order]
        counts = np.bincount(rows, minlength=n_obs)
        indptr = np.zeros(n_obs + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])

    values = _magnitudes(rng, indices.shape[0], magnitude, magnitude_scale).astype(np.float32)
    codes = sparse.csr_matrix((values, indices, indptr), shape=(n_obs, n_features))
    codes.sort_indices()

    # mix in chunks; the embedding is the only dense output
    dict32 = dictionary.astype(np.float32)
    emb = np.empty((n_obs, n_dims), dtype=np.float32)
    chunk = max(1, CHUNK_ENTRIES // max(n_dims, 1))
    noise_sq = 0.0
    for start in range(0, n_obs, chunk):
        stop = min(n_obs, start + chunk)
        block = codes[start:stop] @ dict32
        if noise > 0:
            eps = rng.standard_normal(block.shape, dtype=np.float32) * np.float32(noise)
            noise_sq += float(np.einsum("ij,ij->", eps, eps, dtype=np.float64))
            block += eps
        emb[start:stop] = block
    centred = float(np.einsum("ij,ij->", emb, emb, dtype=np.float64)) - n_obs * float(
        np.square(emb.mean(0, dtype=np.float64)).sum()
    )
    noise_fvu = noise_sq / centred if centred > 0 else float("nan")

    frequency = np.bincount(codes.indices, minlength=n_features) / n_obs
    obs = pd.DataFrame(
        {"n_active": np.diff(codes.indptr).astype(np.int64)},
        index=pd.RangeIndex(n_obs).astype(str),
    )
    adata = AnnData(obs=obs)
    adata.obsm[key_added] = emb
    adata.obsm["true_codes"] = codes
    adata.uns["simulation"] = {
        "true_dictionary": dictionary,
        "feature_frequency": frequency,
        "parent": parent,
        "module": module,
        "noise_fvu": float(noise_fvu),
        "params": params,
    }
    return adata
