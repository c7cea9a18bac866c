"""tl.link_pathways: network inputs, decoupler methods, empty features, errors, recovery."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from _helpers import SHARED, programme_counts
from scipy import sparse

import scsae
from scsae.tl._pathways import read_net

HALLMARK = SHARED / "h.all.v7.0.symbols.gmt"
PROGENY = SHARED / "progeny_human_top100_2019.csv"
needs_shared = pytest.mark.skipif(
    not SHARED.exists(), reason=f"shared test data not found at {SHARED}"
)


def programmes(n_cells=300, n_genes=120, n_prog=6, genes_per=12, seed=0):
    """Programme counts; obsm['programmes'] = true activities."""
    adata, act, sets, _ = programme_counts(n_cells, n_genes, n_prog, genes_per, seed)
    adata.obsm["programmes"] = act
    return adata, sets


@pytest.fixture
def scored():
    """Programme data with the true activities as 'SAE' features, gene scores computed."""
    adata, sets = programmes()
    adata.obsm["X_sae"] = sparse.csr_matrix(adata.obsm["programmes"].astype(np.float32))
    adata.uns["X_sae"] = {"params": {"use_rep": "X_emb"}, "decoder": np.eye(6)}
    scsae.tl.feature_genes(adata)
    return adata, sets


def test_read_net_inputs(tmp_path):
    sets = {"A": ["x", "y", "y"], "B": ["z"]}
    net = read_net(sets)
    assert list(net.columns) == ["source", "target", "weight"]
    assert len(net) == 3  # duplicate removed
    gmt = tmp_path / "s.gmt"
    gmt.write_text("A\tna\tx\ty\nB\tna\tz\n")
    pd.testing.assert_frame_equal(read_net(gmt), net)
    csv = tmp_path / "n.csv"
    net.assign(weight=[1.0, -1.0, 2.0]).to_csv(csv, index=False)
    assert read_net(csv)["weight"].tolist() == [1.0, -1.0, 2.0]
    with pytest.raises(ValueError, match="'source' and 'target'"):
        read_net(pd.DataFrame({"geneset": ["A"], "genesymbol": ["x"]}))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_net(tmp_path / "missing.gmt")
    with pytest.raises(TypeError, match="dict of gene sets"):
        read_net(3)


def test_true_programme_ranked_first(scored):
    adata, sets = scored
    scsae.tl.link_pathways(adata, sets, tmin=3, n_perm=20)
    res = adata.uns["X_sae_pathways"]
    assert res["scores"].shape == (6, 6)
    assert (res["qvals"][np.arange(6), np.arange(6)] < 0.05).all()  # calibrated, still found
    best = res["sources"][np.argmax(res["scores"], axis=1)]
    assert list(best) == [f"PROG{k}" for k in range(6)]
    assert (res["pvals_adj"][np.arange(6), np.argmax(res["scores"], axis=1)] < 1e-3).all()
    assert (res["n_targets"] == 12).all()
    assert res["params"]["method"] == "ulm"


@pytest.mark.parametrize("method", ["mlm", "ora", "aucell"])
def test_other_decoupler_methods(scored, method):
    adata, sets = scored
    kwargs = {"n_up": 12, "n_bg": None} if method == "ora" else {}
    scsae.tl.link_pathways(adata, sets, method=method, tmin=3, n_perm=5, method_kwargs=kwargs)
    res = adata.uns["X_sae_pathways"]
    # the true programme scores highest (ora ranks by magnitude, so ties with sets of
    # strongly negative genes are possible)
    true_score = res["scores"][np.arange(6), np.arange(6)]
    assert (true_score >= np.nanmax(res["scores"], axis=1) - 1e-6).mean() >= 5 / 6
    if method == "aucell":  # no test: no p-values
        assert np.isnan(res["pvals_adj"]).all()
    else:
        assert np.nanmax(res["pvals_adj"]) <= 1


def test_empty_features_are_kept(scored, tmp_path):
    adata, sets = scored
    adata.varm["X_sae_genes"][:, 2] = 0  # e.g. a dead feature
    scsae.tl.link_pathways(adata, sets, tmin=3, n_perm=5)
    res = adata.uns["X_sae_pathways"]
    assert res["scores"].shape[0] == 6
    assert res["empty"].tolist() == [False, False, True, False, False, False]
    assert np.isnan(res["scores"][2]).all()
    assert np.isfinite(res["scores"][[0, 1, 3, 4, 5]]).all()
    adata.write_h5ad(tmp_path / "p.h5ad")
    back = ad.read_h5ad(tmp_path / "p.h5ad")
    np.testing.assert_array_equal(back.uns["X_sae_pathways"]["scores"], res["scores"])
    assert list(back.uns["X_sae_pathways"]["sources"]) == list(res["sources"])


def test_copy(scored):
    adata, sets = scored
    out = scsae.tl.link_pathways(adata, sets, tmin=3, n_perm=0, copy=True, key_added="p")
    assert "p" in out.uns
    assert "p" not in adata.uns


def test_zero_overlap_errors_with_hints(scored):
    adata, _ = scored
    before = set(adata.uns)
    with pytest.raises(ValueError, match="Ensembl IDs"):
        scsae.tl.link_pathways(adata, {"S": [f"ENSG0000{i}" for i in range(10)]})
    adata.var_names = [f"Gene{i}" for i in range(adata.n_vars)]
    with pytest.raises(ValueError, match="species mismatch"):
        scsae.tl.link_pathways(adata, {"S": [f"GENE{i}" for i in range(10)]})
    assert set(adata.uns) == before


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"method": "nope"}, ValueError, "not a decoupler method"),
        ({"tmin": 50}, ValueError, "tmin=50"),
        ({"genes_key": "other"}, KeyError, "feature_genes"),
        ({"key": "X_other"}, KeyError, "scsae.tl.sae"),
        ({"mod": "rna"}, ValueError, "only for MuData"),
    ],
)
def test_errors(scored, kwargs, err, match):
    adata, sets = scored
    with pytest.raises(err, match=match):
        scsae.tl.link_pathways(adata, sets, **kwargs)
    assert "X_sae_pathways" not in adata.uns


@needs_shared
def test_progeny_and_hallmark_files(scored):
    adata, _ = scored
    # rename genes to real symbols so that the shared networks overlap
    hallmark = read_net(HALLMARK)
    progeny = pd.read_csv(PROGENY)
    genes = pd.unique(pd.concat([hallmark["target"], progeny["target"]]))[: adata.n_vars]
    adata.var_names = genes
    scsae.tl.link_pathways(adata, HALLMARK, key_added="h", tmin=1, n_perm=5)
    scsae.tl.link_pathways(adata, progeny, key_added="p", tmin=1, n_perm=5)
    assert adata.uns["h"]["params"]["n_sources_net"] == 50
    assert adata.uns["p"]["params"]["n_sources_net"] == 14
    assert adata.uns["h"]["scores"].shape[0] == 6
    # a set that holds every scored gene is left out, not a crash
    scsae.tl.link_pathways(
        adata, {"ALL": list(genes), "ONE": list(genes[:10])}, key_added="a", n_perm=5
    )
    assert list(adata.uns["a"]["sources"]) == ["ONE"]


def test_simulated_programmes_ranked_first_by_trained_sae():
    """Must show: features of a real SAE that recover a programme get it ranked first."""
    adata, sets = programmes(n_cells=400, n_genes=160, n_prog=8, genes_per=15, seed=3)
    sc.pp.pca(adata, n_comps=16)
    scsae.tl.sae(adata, k=8, max_epochs=60, random_state=0)
    acts = adata.obsm["X_sae"].toarray()
    truth = adata.obsm["programmes"]
    a = (acts - acts.mean(0)) / (acts.std(0) + 1e-12)
    t = (truth - truth.mean(0)) / truth.std(0)
    corr = a.T @ t / acts.shape[0]
    recovering = np.flatnonzero(corr.max(axis=1) >= 0.5)
    assert len(set(corr[recovering].argmax(axis=1))) >= 6  # most programmes are recovered
    rates = {}
    for route in ("association", "loadings"):
        scsae.tl.feature_genes(adata, method=route)
        scsae.tl.link_pathways(adata, sets, n_perm=10)
        res = adata.uns["X_sae_pathways"]
        first = res["sources"][
            np.nanargmax(np.nan_to_num(res["scores"], nan=-np.inf)[recovering], axis=1)
        ]
        truth_names = np.array([f"PROG{k}" for k in corr[recovering].argmax(axis=1)])
        rates[route] = float((first == truth_names).mean())
    print(f"{len(recovering)} recovering features; ranked first: {rates}")
    assert rates["association"] >= 0.9


def test_sparse_ulm_equals_decoupler(scored):
    """The sparse ulm of link_pathways gives decoupler.mt.ulm's numbers (binary and signed sets)."""
    adata, sets = scored
    rng = np.random.default_rng(0)
    genes = np.asarray(adata.var_names)
    signed = pd.DataFrame(
        [
            (f"W{i}", g, w)
            for i in range(4)
            for g, w in zip(
                genes[rng.choice(120, 30, replace=False)], rng.normal(size=30), strict=True
            )
        ],
        columns=["source", "target", "weight"],
    )
    for net in (sets, signed):
        scsae.tl.link_pathways(adata, net, n_perm=0, key_added="fast")
        # any decoupler option (here its default tval=True) sends ulm to decoupler itself
        scsae.tl.link_pathways(adata, net, n_perm=0, key_added="dc", method_kwargs={"tval": True})
        fast, dc = adata.uns["fast"], adata.uns["dc"]
        np.testing.assert_allclose(fast["scores"], dc["scores"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(fast["pvals_adj"], dc["pvals_adj"], rtol=1e-5, atol=1e-7)
        assert list(fast["sources"]) == list(dc["sources"])


def test_t_p_values_tabulated_within_float32():
    """Large arrays get Student's t tail from a table: relative error far below float32's."""
    from scipy import special

    from scsae.tl._pathways import _two_sided_t_p

    rng = np.random.default_rng(0)
    for df in (3, 298, 19998):
        t = np.concatenate([rng.normal(scale=4, size=300_000), rng.uniform(-40, 40, 1000)])
        exact = 2 * special.stdtr(df, -np.abs(t))
        p = _two_sided_t_p(t, df)
        ok = exact > 1e-250
        assert np.max(np.abs(p[ok] / exact[ok] - 1)) < 1e-8
        assert np.all(p[~ok] < 1e-240)
    small = np.array([0.0, 1.5, -2.0, np.nan, np.inf])
    np.testing.assert_allclose(
        _two_sided_t_p(small, 10)[:3], 2 * special.stdtr(10, -np.abs(small[:3]))
    )
    assert np.isnan(_two_sided_t_p(small, 10)[3])


@needs_shared
def test_geneset_loaders_read_local_files():
    net = scsae.datasets.hallmark(HALLMARK)
    assert list(net.columns) == ["source", "target", "weight"]
    assert net["source"].nunique() == 50
    prog = scsae.datasets.progeny(PROGENY)
    assert prog["source"].nunique() == 14
    assert (prog["weight"] < 0).any()


def test_geneset_loader_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="path=None to download"):
        scsae.datasets.hallmark(tmp_path / "h.gmt")


# --------------------------------------------------------------------------------------
# calibration: features unrelated to the genes give (almost) no significant set
# --------------------------------------------------------------------------------------


def _significant_share(adata, field="qvals"):
    """Share of features with any set below 0.05 in ``field``."""
    q = np.nan_to_num(adata.uns["X_sae_pathways"][field], nan=1.0)
    return float((q < 0.05).any(axis=1).mean())


def _sae(adata, use_rep):
    """Explicit settings: the result must not follow the SAE defaults."""
    scsae.tl.sae(adata, use_rep=use_rep, n_features=64, k=4, max_epochs=30, random_state=0)


def test_calibrated_on_random_embedding():
    """An SAE trained on noise: co-expressed programme sets must not come out significant."""
    adata, sets = programmes(n_cells=300, n_genes=120, n_prog=6, genes_per=12, seed=5)
    adata.obsm["X_noise"] = np.random.default_rng(1).normal(size=(adata.n_obs, 12))
    _sae(adata, "X_noise")
    scsae.tl.feature_genes(adata)
    scsae.tl.link_pathways(adata, sets, tmin=3, n_perm=30)
    share, naive = _significant_share(adata), _significant_share(adata, "pvals_adj")
    print(
        f"random embedding: {share:.1%} of features significant (decoupler p-values: {naive:.1%})"
    )
    assert share <= 0.05


def test_calibrated_on_permuted_cells_and_powered_on_real_cells():
    adata, sets = programmes(n_cells=300, n_genes=120, n_prog=6, genes_per=12, seed=6)
    sc.pp.pca(adata, n_comps=12)
    _sae(adata, "X_pca")
    scsae.tl.feature_genes(adata, method="association")
    scsae.tl.link_pathways(adata, sets, tmin=3, n_perm=30)
    real = _significant_share(adata)
    res = adata.uns["X_sae_pathways"]
    q = np.nan_to_num(res["qvals"], nan=1.0)
    found = {
        res["sources"][j]
        for i, j in zip(*np.nonzero(q < 0.05), strict=True)
        if res["zscores"][i, j] > 0
    }
    adata.obsm["X_sae"] = adata.obsm["X_sae"][np.random.default_rng(2).permutation(adata.n_obs)]
    scsae.tl.feature_genes(adata, method="association")
    scsae.tl.link_pathways(adata, sets, tmin=3, n_perm=30)
    permuted = _significant_share(adata)
    print(f"significant features: real {real:.1%}, permuted cells {permuted:.1%}")
    assert permuted <= 0.05
    assert len(found) >= 5  # most programmes are found by some real feature


def test_calibrated_on_random_decoder_directions():
    """Loadings route: random decoder directions in the PCA link to no set."""
    adata, sets = programmes(n_cells=300, n_genes=120, n_prog=6, genes_per=12, seed=7)
    sc.pp.pca(adata, n_comps=12)
    rng = np.random.default_rng(3)
    adata.obsm["X_sae"] = sparse.csr_matrix(rng.exponential(size=(adata.n_obs, 64)))
    adata.uns["X_sae"] = {"params": {"use_rep": "X_pca"}, "decoder": rng.normal(size=(64, 12))}
    scsae.tl.feature_genes(adata)
    assert adata.uns["X_sae_genes"]["params"]["method"] == "loadings"
    scsae.tl.link_pathways(adata, sets, tmin=3, n_perm=30)
    share, naive = _significant_share(adata), _significant_share(adata, "pvals_adj")
    print(f"random decoder: {share:.1%} of features significant (decoupler p-values: {naive:.1%})")
    assert share <= 0.05
