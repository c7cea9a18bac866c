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
    # features of one module fire together more often than features of different modules
    module = adata.uns["simulation"]["module"][:40]
    top = (codes[:, :40] > 0).toarray().astype(np.float64)
    co = top.T @ top
    expected = np.outer(top.sum(0), top.sum(0)) / codes.shape[0]
    same = (module[:, None] == module[None, :]) & ~np.eye(40, dtype=bool)
    diff = module[:, None] != module[None, :]
    assert (co[same] / expected[same]).mean() > 1.3 * (co[diff] / expected[diff]).mean()
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


def test_hierarchical_expression_truth(tmp_path):
    from scsae.datasets import simulate_hierarchical_expression

    adata = simulate_hierarchical_expression(
        400, 200, 12, n_active=2, n_targets=20, repression_fraction=0.25, random_state=0
    )
    assert adata.shape == (400, 200)
    assert sparse.issparse(adata.X) and adata.X.dtype == np.float32
    assert np.array_equal(adata.X.data, np.round(adata.X.data)) and (adata.X.data >= 0).all()
    hidden = adata.obsm["true_hidden"]
    assert sparse.issparse(hidden) and hidden.shape == (400, 12)
    targets = adata.varm["true_targets"]
    assert targets.shape == (200, 12)
    assert ((targets != 0).sum(0) == 20).all()
    assert (targets < 0).any() and (targets > 0).any()
    assert list(adata.obs["cell_type"].cat.categories) == [f"type_{i}" for i in range(4)]
    # an active programme raises its induced targets' share of the counts
    p = 0
    induced = targets[:, p] > 0
    share = np.asarray(adata.X[:, induced].sum(1)).ravel() / np.asarray(adata.X.sum(1)).ravel()
    on = hidden[:, p].toarray().ravel() > 0
    assert share[on].mean() > 1.5 * share[~on].mean()
    adata.write_h5ad(tmp_path / "expr.h5ad")
    again = simulate_hierarchical_expression(
        400, 200, 12, n_active=2, n_targets=20, repression_fraction=0.25, random_state=0
    )
    assert (again.X != adata.X).nnz == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_targets": 500}, "n_targets"),
        ({"n_active": 50, "active_distribution": "fixed"}, "n_active"),
        ({"dispersion": 0}, "dispersion"),
        ({"repression_fraction": 2}, "repression_fraction"),
    ],
)
def test_hierarchical_expression_errors(kwargs, match):
    from scsae.datasets import simulate_hierarchical_expression

    with pytest.raises(ValueError, match=match):
        simulate_hierarchical_expression(50, 100, 10, **kwargs)
