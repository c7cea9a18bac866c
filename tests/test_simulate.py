import numpy as np
import pytest
from scipy import sparse

from scsae.datasets import simulate_superposition


def test_superposition_shapes_and_truth():
    adata = simulate_superposition(2000, 32, 256, n_active=4, noise=0.01, random_state=0)
    emb, codes = adata.obsm["X_emb"], adata.obsm["true_codes"]
    sim = adata.uns["simulation"]
    assert emb.shape == (2000, 32) and emb.dtype == np.float32
    assert sparse.issparse(codes) and codes.shape == (2000, 256)
    assert (np.diff(codes.indptr) == 4).all()
    assert (codes.data > 0).all()
    dictionary = sim["true_dictionary"]
    np.testing.assert_allclose(np.linalg.norm(dictionary, axis=1), 1, atol=1e-6)
    # without noise the embedding is exactly the codes mixed through the dictionary
    clean = simulate_superposition(2000, 32, 256, n_active=4, noise=0.0, random_state=0)
    np.testing.assert_allclose(
        clean.obsm["X_emb"], clean.obsm["true_codes"] @ dictionary.astype(np.float32), atol=1e-5
    )
    assert clean.uns["simulation"]["noise_fvu"] == 0
    assert 0 < sim["noise_fvu"] < 0.01
    assert sim["params"]["n_active"] == 4


def test_superposition_seeded():
    a = simulate_superposition(500, 8, 40, random_state=3)
    b = simulate_superposition(500, 8, 40, random_state=3)
    c = simulate_superposition(500, 8, 40, random_state=4)
    np.testing.assert_array_equal(a.obsm["X_emb"], b.obsm["X_emb"])
    assert not np.array_equal(a.obsm["X_emb"], c.obsm["X_emb"])


def test_superposition_hierarchy_correlation_options(tmp_path):
    adata = simulate_superposition(
        3000,
        16,
        120,
        n_active=3,
        active_distribution="poisson",
        magnitude="exponential",
        frequency_exponent=1.0,
        correlation=1.5,
        n_modules=4,
        n_children=2,
        child_similarity=0.6,
        random_state=1,
    )
    codes = adata.obsm["true_codes"].tocsr()
    parent = adata.uns["simulation"]["parent"]
    assert (parent[:40] == -1).all() and (parent[40:] >= 0).all()
    # a child never fires without its parent
    for i in range(300):
        row = set(codes.indices[codes.indptr[i] : codes.indptr[i + 1]])
        assert all(parent[j] in row for j in row if parent[j] >= 0)
    # children lean towards their parents
    d = adata.uns["simulation"]["true_dictionary"]
    cos = np.abs((d[40:] * d[parent[40:]]).sum(1))
    assert cos.mean() > 0.4
    # Zipf frequencies: the first feature fires most
    freq = adata.uns["simulation"]["feature_frequency"]
    assert freq[0] == freq[:40].max()
    adata.write_h5ad(tmp_path / "sim.h5ad")


def test_superposition_fast():
    import time

    start = time.perf_counter()
    adata = simulate_superposition(200_000, 32, 256, n_active=4)
    assert time.perf_counter() - start < 5
    assert adata.obsm["true_codes"].nnz == 800_000


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_active": 300}, "n_active"),
        ({"n_active": 2.5}, "n_active"),
        ({"noise": -1}, "noise"),
        ({"magnitude": "gamma"}, "magnitude"),
        ({"active_distribution": "binomial"}, "active_distribution"),
        ({"n_children": 300}, "n_children"),
    ],
)
def test_superposition_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_superposition(100, 8, 256, **kwargs)
