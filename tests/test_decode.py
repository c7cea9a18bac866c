"""tl.decode_features and tl.steer through tiny scvi-tools models on seeded counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from anndata import AnnData

import scsae

scvi = pytest.importorskip("scvi")

SAE = {"n_features": 12, "k": 2, "max_epochs": 5, "batch_size": 64, "random_state": 0}


def _counts(n_cells=400, n_genes=50, seed=0):
    """Poisson counts from three disjoint gene programmes of varying activity."""
    rng = np.random.default_rng(seed)
    prog = np.zeros((3, n_genes))
    for k in range(3):
        prog[k, k * 10 : (k + 1) * 10] = 1.5
    act = rng.gamma(1.0, 1.0, (n_cells, 3)) * (rng.random((n_cells, 3)) < 0.5)
    rate = rng.gamma(2, 1.0, n_genes) * np.exp(act @ prog)
    counts = rng.poisson(rate).astype(np.float32)
    adata = AnnData(counts, var=pd.DataFrame(index=[f"G{i}" for i in range(n_genes)]))
    adata.obs_names = [f"c{i}" for i in range(n_cells)]
    adata.obs["group"] = np.where(np.arange(n_cells) % 2, "a", "b")
    return adata


def _fit(cls, key):
    torch.manual_seed(0)
    scvi.settings.seed = 0
    adata = _counts()
    cls.setup_anndata(adata)
    model = cls(adata, n_latent=4, n_hidden=32)
    model.train(max_epochs=15, batch_size=128, enable_progress_bar=False, accelerator="cpu")
    adata.obsm[key] = model.get_latent_representation()
    scsae.tl.sae(adata, use_rep=key, **SAE)
    return adata, model


@pytest.fixture(scope="module")
def scvi_fit():
    return _fit(scvi.model.SCVI, "X_scVI")


@pytest.fixture(scope="module")
def ldvae_fit():
    return _fit(scvi.model.LinearSCVI, "X_ldvae")


def test_linear_decoder_gives_the_loadings_composed_with_the_feature(ldvae_fit):
    """LDVAE: log expression is linear in z, so the decoded LFC must be loadings @ direction."""
    adata, model = ldvae_fit
    adata = adata.copy()
    scsae.tl.decode_features(adata, model, strength=1.5, n_cells=50)
    lfc = adata.varm["X_sae_genes"] * np.log(2)
    expected = 1.5 * model.get_loadings().to_numpy() @ adata.uns["X_sae"]["decoder"].T
    # equal up to one constant per feature (the softmax normaliser, averaged over cells)
    lfc = lfc - lfc.mean(0)
    expected = expected - expected.mean(0)
    np.testing.assert_allclose(lfc, expected, atol=2e-2 * np.abs(expected).max())
    # LDVAE samples each cell's library: steering is still seeded, and leaves torch's stream alone
    torch.manual_seed(1)
    first = scsae.tl.steer(adata, model, feature=0, strength=1.0, cells=np.arange(20))
    after = torch.rand(3)
    torch.manual_seed(1)
    second = scsae.tl.steer(adata, model, feature=0, strength=1.0, cells=np.arange(20))
    np.testing.assert_array_equal(first.X, second.X)
    np.testing.assert_array_equal(first.layers["counts"], second.layers["counts"])
    torch.manual_seed(1)
    assert torch.equal(after, torch.rand(3))


def test_decode_writes_feature_genes_format_and_is_read_downstream(scvi_fit, tmp_path):
    adata, model = scvi_fit
    out = scsae.tl.decode_features(adata, model, copy=True)
    assert "X_sae_genes" not in adata.varm
    scores = out.varm["X_sae_genes"]
    assert scores.shape == (adata.n_vars, 12) and scores.dtype == np.float32
    params = out.uns["X_sae_genes"]["params"]
    assert params["method"] == "decoder" and params["source"] == "SCVI"
    assert params["latent_r2"] > 0.99
    strengths = out.uns["X_sae_genes"]["strength"]
    tested = out.uns["X_sae_genes"]["tested"]
    assert (strengths[tested] > 0).all()
    assert (np.abs(scores[:, tested]).max(0) > 0).all()
    table = scsae.tl.feature_table(out)
    assert table["top_genes_up"].str.len().gt(0).any()
    out.write_h5ad(tmp_path / "a.h5ad")
    # the dispatch in feature_genes gives the same scores
    again = adata.copy()
    scsae.tl.feature_genes(again, method="decoder", model=model)
    np.testing.assert_allclose(again.varm["X_sae_genes"], scores, rtol=1e-5, atol=1e-6)


def test_link_pathways_calibrates_the_decoder_route_against_random_directions(scvi_fit):
    """Programme gene sets link to the features that drive them; the null comes from random
    decoded directions, so q-values exist, and a run without them says how to proceed."""
    adata, model = scvi_fit
    out = scsae.tl.decode_features(adata, model, n_null=40, copy=True)
    assert out.varm["X_sae_genes_null"].shape == (adata.n_vars, 40)
    assert out.uns["X_sae_genes"]["universe"].all()
    net = pd.DataFrame(
        {
            "source": np.repeat(["P0", "P1", "P2"], 10),
            "target": [f"G{i}" for i in range(30)],
            "weight": 1.0,
        }
    )
    scsae.tl.link_pathways(out, net, n_perm=40)
    q = out.uns["X_sae_pathways"]["qvals"]
    assert np.isfinite(np.asarray(q, dtype=float)).any()
    bare = scsae.tl.decode_features(adata, model, n_null=0, copy=True)
    with pytest.raises(KeyError, match="n_perm=0"):
        scsae.tl.link_pathways(bare, net, n_perm=5)
    scsae.tl.link_pathways(bare, net, n_perm=0)


def test_decode_is_antisymmetric_for_small_moves(scvi_fit):
    adata, model = scvi_fit
    up = scsae.tl.decode_features(adata, model, strength=0.05, copy=True, n_cells=64)
    down = scsae.tl.decode_features(adata, model, strength=-0.05, copy=True, n_cells=64)
    a, b = up.varm["X_sae_genes"].ravel(), down.varm["X_sae_genes"].ravel()
    assert np.corrcoef(a, b)[0, 1] < -0.95


def test_steer_matches_decode_and_returns_counterfactual_cells(scvi_fit):
    adata, model = scvi_fit
    cells = adata.obs_names[:40]
    feat = int(np.argmax(adata.uns["X_sae"]["feature_frequency"]))
    base = scsae.tl.steer(adata, model, feature=feat, strength=0.0, cells=cells)
    moved = scsae.tl.steer(adata, model, feature=feat, strength=1.0, cells=cells)
    assert moved.shape == (40, adata.n_vars)
    assert list(moved.obs_names) == list(cells)
    assert {"counts", "normalized"} <= set(moved.layers)
    counts = moved.layers["counts"]
    assert np.allclose(counts, np.round(counts)) and (counts >= 0).all()
    lfc = (np.log2(moved.layers["normalized"]) - np.log2(base.layers["normalized"])).mean(0)
    ref = scsae.tl.decode_features(adata, model, strength=1.0, cells=cells, copy=True)
    np.testing.assert_allclose(lfc, ref.varm["X_sae_genes"][:, feat], atol=1e-4)
    np.testing.assert_allclose(
        moved.obsm["X_scVI"] - base.obsm["X_scVI"],
        np.broadcast_to(adata.uns["X_sae"]["decoder"][feat], (40, 4)),
        atol=1e-5,
    )
    # seeded sampling: the same call gives the same counts
    again = scsae.tl.steer(adata, model, feature=feat, strength=1.0, cells=cells)
    np.testing.assert_array_equal(again.layers["counts"], counts)


def test_errors(scvi_fit):
    adata, model = scvi_fit
    bad = adata.copy()
    before_uns, before_varm = set(bad.uns), set(bad.varm)
    with pytest.raises(ValueError, match=r"features are integers in \[0, 12\)"):
        scsae.tl.steer(bad, model, feature=12, strength=1.0)
    with pytest.raises(TypeError, match="scvi-tools model"):
        scsae.tl.decode_features(bad, object())
    with pytest.raises(TypeError, match="scvi-tools model"):
        scsae.tl.feature_genes(bad, method="decoder")  # model= forgotten
    # an embedding of the right width that is not the model's latent
    rng = np.random.default_rng(0)
    bad.obsm["X_scVI"] = rng.normal(size=bad.obsm["X_scVI"].shape).astype(np.float32)
    with pytest.raises(ValueError, match="is not this model's latent"):
        scsae.tl.decode_features(bad, model)
    # an SAE trained on an embedding of another width
    bad.obsm["X_other"] = rng.normal(size=(bad.n_obs, 6)).astype(np.float32)
    scsae.tl.sae(bad, use_rep="X_other", key_added="X_sae6", **SAE)
    before_uns, before_varm = set(bad.uns), set(bad.varm)
    with pytest.raises(ValueError, match="latent has 4 dimensions but the SAE"):
        scsae.tl.decode_features(bad, model, key="X_sae6")
    with pytest.raises(KeyError, match="not in obs_names"):
        scsae.tl.decode_features(adata, model, cells=["nope"])
    assert set(bad.uns) == before_uns and set(bad.varm) == before_varm
    assert "X_sae_genes" not in adata.varm
