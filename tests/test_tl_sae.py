"""scsae.tl.sae: the scanpy-style wrapper, its outputs, bad input and quality on real data."""

import anndata as ad
import mudata as md
import numpy as np
import pytest
import scanpy as sc
from scipy import sparse

import scsae

FAST = {"max_epochs": 10, "batch_size": 256, "lr": 3e-3, "n_features": 64, "k": 3}


def _snapshot(adata):
    return {
        "obs": list(getattr(adata, "obs", {}).keys()),
        "obsm": {k: v.copy() for k, v in adata.obsm.items()},
        "uns": set(adata.uns.keys()),
        "varm": set(adata.varm.keys()),
    }


def _unchanged(adata, snap):
    assert list(getattr(adata, "obs", {}).keys()) == snap["obs"]
    assert set(adata.uns.keys()) == snap["uns"]
    assert set(adata.varm.keys()) == snap["varm"]
    assert set(adata.obsm.keys()) == set(snap["obsm"])
    for key, value in snap["obsm"].items():
        new = adata.obsm[key]
        if sparse.issparse(value):
            assert (new != value).nnz == 0
        else:
            np.testing.assert_array_equal(new, value)


@pytest.fixture(scope="module")
def pbmc():
    adata = sc.datasets.pbmc68k_reduced()
    scsae.tl.sae(adata, use_rep="X_pca")
    return adata


def test_default_on_pbmc_reaches_quality(pbmc):
    """Held-out FVU of the defaults, beside the rank-k PCA of the training cells."""
    metrics = pbmc.uns["X_sae"]["metrics"]
    assert metrics["has_heldout"] and metrics["n_heldout_cells"] == 70
    # seeds 0-4: 0.13-0.16 and 0.34-0.38 x the baseline (benchmarks/sae_pbmc_defaults.py)
    assert metrics["fvu"] <= 0.2
    assert metrics["fvu"] <= 0.5 * metrics["baseline_fvu_rank_k"]
    assert metrics["train_fvu"] < metrics["fvu"]
    assert metrics["heldout_mean_l0"] <= 16
    assert metrics["train_dead_fraction"] <= 0.05


def test_outputs_and_h5ad_round_trip(pbmc, tmp_path):
    acts = pbmc.obsm["X_sae"]
    result = pbmc.uns["X_sae"]
    n_features = result["params"]["n_features"]
    assert (
        sparse.isspmatrix_csr(acts) and acts.dtype == np.float32 and acts.shape == (700, n_features)
    )
    assert result["decoder"].shape == (n_features, 50)
    assert result["feature_frequency"].shape == (n_features,)
    assert result["params"]["use_rep"] == "X_pca"
    # the registration tl.sae made for its model is gone with the model
    assert not {"_scvi_uuid", "_scvi_manager_uuid"} & set(pbmc.uns)
    heldout = pbmc.obs[result["params"]["heldout_key"]].to_numpy()
    assert heldout.dtype == bool and heldout.sum() == result["metrics"]["n_heldout_cells"] == 70
    assert {"train_fvu", "validation_fvu", "lr"} <= set(result["history"])
    # the stored decoder, bias and activations reconstruct the embedding as the metrics say
    recon = result["bias"] + acts @ result["decoder"]
    x = pbmc.obsm["X_pca"]
    for cells, name in ((heldout, "fvu"), (~heldout, "train_fvu")):
        err = ((x[cells] - recon[cells]) ** 2).sum()
        assert err / ((x[cells] - x[cells].mean(0)) ** 2).sum() == pytest.approx(
            result["metrics"][name], rel=1e-3
        )
    # gene loadings: decoder composed with the PCs
    np.testing.assert_allclose(
        pbmc.varm["X_sae_loadings"], pbmc.varm["PCs"] @ result["decoder"].T, rtol=1e-4, atol=1e-6
    )
    pbmc.write_h5ad(tmp_path / "pbmc.h5ad")
    back = ad.read_h5ad(tmp_path / "pbmc.h5ad")
    assert (back.obsm["X_sae"] != acts).nnz == 0
    assert back.uns["X_sae"]["params"] == result["params"]
    np.testing.assert_array_equal(back.uns["X_sae"]["decoder"], result["decoder"])


def test_copy_key_added_and_return_model(adata):
    snap = _snapshot(adata)
    out, model = scsae.tl.sae(
        adata, use_rep="X_emb", key_added="sae2", copy=True, return_model=True, **FAST
    )
    _unchanged(adata, snap)
    assert "sae2" in out.obsm and "sae2" in out.uns
    assert isinstance(model, scsae.SAE)
    assert model.adata is out and "_scvi_uuid" in out.uns  # the model keeps its registration
    assert (model.get_feature_activations() != out.obsm["sae2"]).nnz == 0
    assert "sae2_loadings" not in out.varm  # not a PCA


@pytest.mark.parametrize("kernel", ["dense", "sparse"])
def test_same_seed_same_result(adata, kernel):
    options = {**FAST, "model_kwargs": {"kernel": kernel}}
    a = scsae.tl.sae(adata, use_rep="X_emb", copy=True, **options)
    b = scsae.tl.sae(adata, use_rep="X_emb", copy=True, **options)
    assert (a.obsm["X_sae"] != b.obsm["X_sae"]).nnz == 0
    assert a.uns["X_sae"]["params"]["kernel"] == kernel


def test_same_seed_same_activations_with_defaults():
    """No timing decides anything: default settings rerun bit-identically."""
    adata = scsae.datasets.simulate_superposition(2000, 32, 128, n_active=4, random_state=3)
    a = scsae.tl.sae(adata, use_rep="X_emb", copy=True)
    b = scsae.tl.sae(adata, use_rep="X_emb", copy=True)
    assert (a.obsm["X_sae"] != b.obsm["X_sae"]).nnz == 0
    np.testing.assert_array_equal(a.uns["X_sae"]["decoder"], b.uns["X_sae"]["decoder"])
    assert a.uns["X_sae"]["params"]["kernel"] == "dense"


def test_auto_kernel_is_a_size_rule(adata):
    from scsae.models._sae_module import SPARSE_KERNEL_MIN_FEATURES, SAEConfig, SAEModule

    for n, expected in (
        (SPARSE_KERNEL_MIN_FEATURES - 1, "dense"),
        (SPARSE_KERNEL_MIN_FEATURES, "sparse"),
    ):
        assert SAEModule(SAEConfig(16, n)).kernel == expected
    assert SAEModule(SAEConfig(16, 4096, "relu")).kernel == "dense"


def test_mudata_obsm(adata):
    mdata = md.MuData({"rna": adata.copy()})
    mdata.obsm["X_joint"] = adata.obsm["X_emb"]
    scsae.tl.sae(mdata, use_rep="X_joint", **FAST)
    assert mdata.obsm["X_sae"].shape == (adata.n_obs, 64)
    assert mdata.uns["X_sae"]["params"]["use_rep"] == "X_joint"


@pytest.mark.parametrize(
    ("change", "kwargs", "error", "match"),
    [
        (None, {"use_rep": "X_scVI"}, KeyError, "sc.pp.pca"),
        ("nan", {"use_rep": "X_emb"}, ValueError, "NaN or infinite values in 1 cells"),
        ("1d", {"use_rep": "one"}, ValueError, "cells x dims"),
        ("empty", {"use_rep": "empty"}, ValueError, "empty"),
        (
            None,
            {"use_rep": "X_emb", "batch_size": 5000},
            ValueError,
            "exceeds the 1800 training cells",
        ),
        (
            None,
            {"use_rep": "X_emb", "k": 8, "n_features": 8},
            ValueError,
            "k=8 must be between 1 and n_features - 1",
        ),
        (None, {"use_rep": "X_emb", "k": 16}, ValueError, "Pass k < 16"),
        (None, {"use_rep": "one_dim"}, ValueError, "has 1 dimension"),
        (None, {"use_rep": None}, ValueError, "use_rep='X'"),
        ("few", {"use_rep": "X_emb"}, ValueError, "at least 10"),
        (None, {"use_rep": "X_emb", "architecture": "gated"}, ValueError, "choose one of"),
        (None, {"use_rep": "X_emb", "train_size": 0.0}, ValueError, "train_size"),
    ],
)
def test_bad_input_leaves_adata_untouched(adata, change, kwargs, error, match):
    adata.obsm["one_dim"] = adata.obsm["X_emb"][:, :1].copy()
    if change == "nan":
        adata.obsm["X_emb"][7, 2] = np.nan
    elif change == "1d":
        adata = _with_1d(adata)
    elif change == "empty":
        adata.obsm["empty"] = np.zeros((adata.n_obs, 0), dtype=np.float32)
    elif change == "few":
        adata = adata[:8].copy()
    snap = _snapshot(adata)
    options = {k: v for k, v in FAST.items() if k not in kwargs}
    with pytest.raises(error, match=match):
        scsae.tl.sae(adata, **options, **kwargs)
    _unchanged(adata, snap)


def _with_1d(adata):
    """An AnnData-like object whose obsm holds a 1-D vector (AnnData itself refuses one)."""

    class Holder:
        pass

    holder = Holder()
    holder.obsm = {"one": adata.obsm["X_emb"][:, 0]}
    holder.uns = {}
    holder.varm = {}
    return holder


def test_dictionary_learned_by_sparse_coding(adata):
    scsae.tl.sae(adata, use_rep="X_emb", code_inference="omp", inference="omp", **FAST)
    params = adata.uns["X_sae"]["params"]
    assert params["code_inference"]["inference"] == "omp"
    assert params["inference"] == "omp"
    assert adata.uns["X_sae"]["metrics"]["fvu"] < 0.5
    with pytest.raises(ValueError, match="cannot learn a dictionary"):
        scsae.tl.sae(adata, use_rep="X_emb", code_inference="amortized", key_added="bad", **FAST)
    assert "bad" not in adata.uns
