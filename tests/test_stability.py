"""tl.feature_stability: one-to-one matching across seeds, stored and tabled."""

import numpy as np
import pytest

import scsae
from scsae.tl._stability import matched_cosines

FAST = {"max_epochs": 10, "batch_size": 256, "lr": 3e-3, "n_features": 64, "k": 3}


def test_matching_is_one_to_one():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((20, 8))
    perm = rng.permutation(20)
    np.testing.assert_allclose(matched_cosines(ref, 3 * ref[perm]), 1.0)
    # two reference rows sharing one best match: only one of them gets it
    dup = np.vstack([ref[:1], ref[:1] + 1e-3 * rng.standard_normal((1, 8)), ref[2:]])
    cos = matched_cosines(dup, ref)
    assert (cos[:2] > 0.99).sum() == 1


def test_feature_stability_stores_and_tables():
    adata = scsae.datasets.simulate_superposition(3000, 16, 32, n_active=2, random_state=0)
    options = {"n_features": 32, "k": 2, "max_epochs": 40, "batch_size": 256, "lr": 1e-2}
    scsae.tl.sae(adata, use_rep="X_emb", **options)
    before = adata.uns["X_sae"]["decoder"].copy()
    scsae.tl.feature_stability(adata, n_seeds=2)
    out = adata.uns["X_sae"]["stability"]
    assert out["cosine"].shape == (32, 2) and out["params"]["seeds"] == [1, 2]
    np.testing.assert_allclose(out["stability"], out["cosine"].min(1))
    assert out["stable_fraction"] == pytest.approx(out["stable"].mean())
    # 32 directions, 2 active per cell: most features are found again (22 of 32)
    assert out["stable_fraction"] >= 0.5
    np.testing.assert_array_equal(adata.uns["X_sae"]["decoder"], before)
    # retraining registers the data with scvi-tools only for the duration of the call
    assert "_scvi_uuid" not in adata.uns and "_scvi_manager_uuid" not in adata.uns
    table = scsae.tl.feature_table(adata)
    np.testing.assert_allclose(table["stability"], out["stability"])
    assert table["stable"].dtype == bool


def test_feature_stability_errors_leave_adata_untouched(adata):
    with pytest.raises(KeyError, match=r"Run scsae\.tl\.sae"):
        scsae.tl.feature_stability(adata)
    scsae.tl.sae(adata, use_rep="X_emb", **FAST)
    with pytest.raises(ValueError, match="n_seeds"):
        scsae.tl.feature_stability(adata, n_seeds=0)
    assert "stability" not in adata.uns["X_sae"]
