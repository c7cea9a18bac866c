"""Small seeded fixtures: synthetic embeddings with a known dictionary."""

from __future__ import annotations

import numpy as np
import pytest
from anndata import AnnData
from scipy import sparse


def superposition(
    n_obs: int = 2000,
    n_dims: int = 16,
    n_features: int = 64,
    n_active: int = 3,
    noise: float = 0.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Embedding from sparse non-negative codes over unit directions; returns (X, D, codes)."""
    rng = np.random.default_rng(seed)
    dictionary = rng.normal(size=(n_features, n_dims))
    dictionary /= np.linalg.norm(dictionary, axis=1, keepdims=True)
    codes = np.zeros((n_obs, n_features))
    rows = np.repeat(np.arange(n_obs), n_active)
    cols = np.argsort(rng.random((n_obs, n_features)), axis=1)[:, :n_active].ravel()
    codes[rows, cols] = rng.uniform(0.5, 1.5, size=rows.size)
    x = codes @ dictionary + noise * rng.normal(size=(n_obs, n_dims))
    return x.astype(np.float32), dictionary, codes


@pytest.fixture
def adata() -> AnnData:
    """2,000 cells, a 16-dim embedding of 3-sparse codes over 64 directions, plus counts in X."""
    x, dictionary, codes = superposition()
    rng = np.random.default_rng(1)
    counts = sparse.random(
        x.shape[0], 30, density=0.2, format="csr", random_state=rng, dtype=np.float32
    )
    ad = AnnData(X=counts)
    ad.obsm["X_emb"] = x
    ad.uns["true_dictionary"] = dictionary
    ad.obsm["true_codes"] = sparse.csr_matrix(codes)
    return ad
