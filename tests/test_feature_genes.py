"""tl.feature_genes: both routes, MuData, errors; must-show on pbmc68k_reduced."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from _helpers import SHARED, programme_counts
from scipy import sparse, stats

import scsae

HALLMARK = SHARED / "h.all.v7.0.symbols.gmt"
MUON = SHARED / "muon_test_rna_atac.h5mu"


def programmes(n_cells=300, n_genes=120, n_prog=6, genes_per=12, seed=0):
    """Programme counts; obsm['X_sae'] = true activities."""
    adata, act, sets, rng = programme_counts(n_cells, n_genes, n_prog, genes_per, seed)
    adata.obsm["X_sae"] = sparse.csr_matrix(act.astype(np.float32))
    adata.uns["X_sae"] = {"params": {"use_rep": "X_emb"}, "decoder": rng.normal(size=(n_prog, 8))}
    return adata, sets


@pytest.fixture
def sim():
    return programmes()


def test_association_recovers_programme_genes(sim):
    adata, sets = sim
    scsae.tl.feature_genes(adata)
    assert adata.uns["X_sae_genes"]["params"]["method"] == "association"
    scores = adata.varm["X_sae_genes"]
    assert scores.shape == (adata.n_vars, 6)
    for k in range(6):
        top = adata.var_names[np.argsort(-scores[:, k])[:12]]
        assert len(set(top) & set(sets[f"PROG{k}"])) >= 11
    p, padj = adata.varm["X_sae_genes_pvals"], adata.varm["X_sae_genes_pvals_adj"]
    assert ((p >= 0) & (p <= 1)).all()
    assert (padj >= p - 1e-6).all()
    assert adata.uns["X_sae_genes"]["tested"].all()


def test_association_matches_welch_t_test(sim):
    adata, _ = sim
    scsae.tl.feature_genes(adata, use_raw=False, n_top_cells=None)
    acts = adata.obsm["X_sae"].toarray()[:, 2]
    x = adata.X.toarray()
    res = stats.ttest_ind(x[acts > 0], x[acts == 0], equal_var=False)
    t = np.nan_to_num(res.statistic)
    np.testing.assert_allclose(adata.varm["X_sae_genes"][:, 2], t, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(
        adata.varm["X_sae_genes_pvals"][:, 2],
        np.nan_to_num(res.pvalue, nan=1.0),
        rtol=1e-3,
        atol=1e-6,
    )


def test_top_cells_smd_and_dense_input(sim):
    adata, sets = sim
    adata.layers["dense"] = adata.X.toarray()
    scsae.tl.feature_genes(adata, layer="dense", n_top_cells=20, statistic="smd", chunk_size=2)
    assert adata.uns["X_sae_genes"]["n_cells_top"].max() == 20
    top = adata.var_names[np.argsort(-adata.varm["X_sae_genes"][:, 0])[:12]]
    assert len(set(top) & set(sets["PROG0"])) >= 10


def test_untested_features_are_kept(sim):
    adata, _ = sim
    acts = adata.obsm["X_sae"].tolil()
    acts[:, 1] = 0
    adata.obsm["X_sae"] = acts.tocsr()
    scsae.tl.feature_genes(adata)
    assert adata.varm["X_sae_genes"].shape[1] == 6
    assert not adata.uns["X_sae_genes"]["tested"][1]
    assert (adata.varm["X_sae_genes"][:, 1] == 0).all()
    assert (adata.varm["X_sae_genes_pvals_adj"][:, 1] == 1).all()


def test_loadings_route(sim):
    adata, _ = sim
    rng = np.random.default_rng(0)
    pcs = rng.normal(size=(adata.n_vars, 8))
    adata.varm["PCs"] = pcs
    adata.uns["X_sae"]["params"]["use_rep"] = "X_pca"
    scsae.tl.feature_genes(adata, method="association")
    scsae.tl.feature_genes(adata)  # auto -> loadings (they cover every gene)
    res = adata.uns["X_sae_genes"]
    assert res["params"]["method"] == "loadings"
    assert "covers all 120 genes" in res["params"]["route_reason"]
    assert res["universe"].all()
    expected = pcs @ adata.uns["X_sae"]["decoder"].T
    np.testing.assert_allclose(adata.varm["X_sae_genes"], expected, rtol=1e-5, atol=1e-5)
    assert "X_sae_genes_pvals" not in adata.varm  # stale p-values removed
    # user loadings: a varm key, an array and a DataFrame give the same
    adata.varm["W"] = pcs
    scsae.tl.feature_genes(adata, loadings="W", key_added="w")
    scsae.tl.feature_genes(adata, loadings=pcs, key_added="a")
    df = pd.DataFrame(pcs, index=adata.var_names)[::-1]
    scsae.tl.feature_genes(adata, loadings=df, key_added="d")
    np.testing.assert_allclose(adata.varm["w"], adata.varm["a"])
    np.testing.assert_allclose(adata.varm["w"], adata.varm["d"])


def test_hvg_loadings_leave_other_genes_out(sim):
    """A PCA of some genes: auto scores all genes by association; forced loadings -> NaN."""
    adata, _ = sim
    pcs = np.random.default_rng(0).normal(size=(adata.n_vars, 8))
    pcs[:40] = 0  # scanpy writes zeros for genes outside the PCA
    pcs[40:43] = np.nan
    adata.varm["PCs"] = pcs
    adata.uns["X_sae"]["params"]["use_rep"] = "X_pca"
    scsae.tl.feature_genes(adata)
    res = adata.uns["X_sae_genes"]
    assert res["params"]["method"] == "association"
    assert "covers 77 of 120 genes" in res["params"]["route_reason"]
    assert res["params"]["n_universe"] == 120
    scsae.tl.feature_genes(adata, method="loadings")
    res = adata.uns["X_sae_genes"]
    assert res["params"]["n_universe"] == res["universe"].sum() == 77
    scores = adata.varm["X_sae_genes"]
    assert np.isnan(scores[:43]).all() and np.isfinite(scores[43:]).all()


def test_constant_genes_are_outside_the_universe(sim):
    adata, _ = sim
    x = adata.X.toarray()
    x[:, 5], x[:, 6] = 0, 1.5
    adata.X = sparse.csr_matrix(x)
    scsae.tl.feature_genes(adata)
    res = adata.uns["X_sae_genes"]
    assert not res["universe"][5] and not res["universe"][6] and res["universe"].sum() == 118
    assert np.isnan(adata.varm["X_sae_genes"][[5, 6]]).all()
    assert np.isnan(adata.varm["X_sae_genes_pvals_adj"][[5, 6]]).all()
    assert np.isfinite(adata.varm["X_sae_genes_pvals_adj"][res["universe"]]).all()


def test_raw_with_other_genes_goes_to_raw_varm(sim, tmp_path):
    adata, _ = sim
    adata.raw = adata
    small = adata[:, :60].copy()
    scsae.tl.feature_genes(small)
    assert small.uns["X_sae_genes"]["params"]["varm_on"] == "raw"
    assert small.raw.varm["X_sae_genes"].shape == (120, 6)
    small.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    np.testing.assert_array_equal(back.raw.varm["X_sae_genes"], small.raw.varm["X_sae_genes"])
    assert back.uns["X_sae_genes"]["params"]["method"] == "association"


def test_copy_and_h5ad_round_trip(sim, tmp_path):
    adata, _ = sim
    out = scsae.tl.feature_genes(adata, copy=True)
    assert "X_sae_genes" not in adata.varm
    out.write_h5ad(tmp_path / "b.h5ad")
    back = ad.read_h5ad(tmp_path / "b.h5ad")
    for k in ("X_sae_genes", "X_sae_genes_pvals", "X_sae_genes_pvals_adj"):
        np.testing.assert_array_equal(back.varm[k], out.varm[k])
    assert back.uns["X_sae_genes"]["tested"].dtype == bool


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"method": "pca"}, ValueError, "choose 'auto'"),
        ({"method": "loadings"}, ValueError, "needs gene loadings"),
        ({"key": "X_other"}, KeyError, "Run scsae.tl.sae"),
        ({"layer": "nope"}, KeyError, "available layers"),
        ({"use_raw": True}, ValueError, "raw is None"),
        ({"mod": "rna"}, ValueError, "only for MuData"),
        ({"statistic": "z"}, ValueError, "statistic"),
        ({"n_top_cells": 1}, ValueError, "at least 2"),
        ({"loadings": np.ones((3, 3))}, ValueError, "expected genes x embedding dims"),
        ({"loadings": "missing"}, KeyError, "not in varm"),
    ],
)
def test_errors_leave_adata_unchanged(sim, kwargs, err, match):
    adata, _ = sim
    before = (set(adata.varm.keys()), set(adata.uns.keys()))
    with pytest.raises(err, match=match):
        scsae.tl.feature_genes(adata, **kwargs)
    assert (set(adata.varm.keys()), set(adata.uns.keys())) == before


def test_counts_warning(sim, monkeypatch):
    from scsae.tl import _feature_genes

    messages = []
    monkeypatch.setattr(_feature_genes.logg, "warning", lambda msg, **kw: messages.append(msg))
    adata, _ = sim
    adata.layers["counts"] = sparse.csr_matrix(np.full(adata.shape, 40.0))
    scsae.tl.feature_genes(adata, layer="counts")
    assert any("raw counts" in m for m in messages)


def test_mudata_per_modality(tmp_path):
    mudata = pytest.importorskip("mudata")
    rna, sets = programmes(seed=1)
    rng = np.random.default_rng(0)
    prot = ad.AnnData(rng.normal(size=(rna.n_obs, 5)), obs=pd.DataFrame(index=rna.obs_names))
    prot.var_names = [f"P{i}" for i in range(5)]
    prot.X[:, 0] += 3 * rna.obsm["X_sae"].toarray()[:, 0]
    acts, uns = rna.obsm.pop("X_sae"), rna.uns.pop("X_sae")
    mdata = mudata.MuData({"rna": rna, "prot": prot})
    mdata.obsm["X_sae"], mdata.uns["X_sae"] = acts, uns
    scsae.tl.feature_genes(mdata, mod="rna")
    scsae.tl.feature_genes(mdata, mod="prot")
    assert mdata.mod["rna"].varm["X_sae_genes"].shape == (120, 6)
    prot_scores = mdata.mod["prot"].varm["X_sae_genes"]
    assert prot_scores.shape == (5, 6)
    assert np.argmax(prot_scores[:, 0]) == 0
    assert mdata.mod["prot"].uns["X_sae_genes"]["params"]["mod"] == "prot"
    with pytest.raises(ValueError, match="pass mod="):
        scsae.tl.feature_genes(mdata)
    with pytest.raises(KeyError, match="available"):
        scsae.tl.feature_genes(mdata, mod="atac")
    # the rest of the chain on the MuData, and an h5mu round trip
    scsae.tl.link_pathways(mdata, sets, mod="rna", tmin=3, n_perm=10)
    mdata.obs["group"] = pd.Categorical(np.where(acts.toarray()[:, 0] > 0, "on", "off"))
    scsae.tl.feature_enrichment(mdata, "group")
    table = scsae.tl.feature_table(mdata, mod="rna")
    assert table.loc[0, "top_pathway"] == "PROG0"
    assert table.loc[0, "best_category"] == "on"
    mdata.write(tmp_path / "m.h5mu")
    back = mudata.read_h5mu(tmp_path / "m.h5mu")
    pd.testing.assert_frame_equal(scsae.tl.feature_table(back, mod="rna"), table)
    np.testing.assert_array_equal(back.mod["prot"].varm["X_sae_genes"], prot_scores)


@pytest.mark.skipif(not MUON.exists(), reason=f"shared test data not found at {SHARED}")
def test_muon_multiome_links_genes_and_peaks():
    mudata = pytest.importorskip("mudata")
    try:
        mdata = mudata.read_h5mu(MUON)
    except TypeError as err:  # mudata 0.4.1 with anndata 0.13 cannot read this pre-0.2 h5mu file
        pytest.skip(f"this mudata/anndata pair cannot read {MUON.name}: {err}")
    rna = mdata.mod["rna"]
    x = rna.X.toarray() if sparse.issparse(rna.X) else np.asarray(rna.X)
    # a "feature" active in the cells with the highest total RNA of the first 10 genes
    signal = x[:, :10].sum(axis=1)
    acts = np.where(signal > np.quantile(signal, 0.8), signal, 0)[:, None]
    rows = mdata.obs_names.get_indexer(rna.obs_names)
    full = np.zeros((mdata.n_obs, 2))
    full[rows, 0] = acts[:, 0]
    full[: mdata.n_obs // 4, 1] = 1.0
    mdata.obsm["X_sae"] = sparse.csr_matrix(full)
    mdata.uns["X_sae"] = {"params": {"use_rep": "X_joint"}, "decoder": np.eye(2)}
    for mod in ("rna", "atac"):
        m = mdata.mod[mod]
        if m.X.max() > 30:
            sc.pp.normalize_total(m)
            sc.pp.log1p(m)
        scsae.tl.feature_genes(mdata, mod=mod, use_raw=False)
        assert m.varm["X_sae_genes"].shape == (m.n_vars, 2)
        universe = m.uns["X_sae_genes"]["universe"]
        assert np.isfinite(m.varm["X_sae_genes"][universe]).all()
        assert np.isnan(m.varm["X_sae_genes"][~universe]).all()


# --------------------------------------------------------------------------------------
# must show: pbmc68k_reduced, SAE on X_pca (explicit settings: the SAE defaults may change)
# --------------------------------------------------------------------------------------

#: canonical markers tested (those among the 765 genes of pbmc68k_reduced)
MARKERS = {
    "B": ["CD79A", "CD79B", "MS4A1", "BANK1", "CD19", "CD22"],
    "CD14+ monocyte": ["LYZ", "S100A8", "S100A9", "FCN1", "CST3", "CD14", "VCAN"],
    "NK": ["NKG7", "GNLY", "GZMB", "GZMA", "PRF1", "KLRD1"],
    "T": ["CD3D", "CD3E", "CD3G", "LCK", "CD2", "IL7R"],
}
T_LABELS = [
    "CD4+/CD25 T Reg",
    "CD8+ Cytotoxic T",
    "CD8+/CD45RA+ Naive Cytotoxic",
    "CD4+/CD45RO+ Memory",
    "CD4+/CD45RA+/CD25- Naive T",
]
#: top-25 purity per type. NK cells are few (31). Monocytes: pbmc68k_reduced labels 240
#: cells "Dendritic" by correlation to sorted populations, and monocyte features take a
#: few of them among their top 25 (22 monocytes + 3 "Dendritic" is the typical miss at 0.9)
PURITY = {"B": 0.9, "CD14+ monocyte": 0.85, "NK": 0.6, "T": 0.9}


@pytest.fixture(scope="module")
def pbmc():
    adata = sc.datasets.pbmc68k_reduced()
    scsae.tl.sae(adata, n_features=64, k=16, max_epochs=200, random_state=0)
    scsae.tl.feature_genes(adata)  # auto: the PCA covers 309 of 765 genes -> association
    assert adata.uns["X_sae_genes"]["params"]["method"] == "association"
    labels = adata.obs["bulk_labels"].astype(str)
    adata.obs["cell_type"] = pd.Categorical(
        np.select(
            [
                labels == "CD19+ B",
                labels == "CD14+ Monocyte",
                labels == "CD56+ NK",
                labels.isin(T_LABELS),
            ],
            ["B", "CD14+ monocyte", "NK", "T"],
            default="other",
        )
    )
    scsae.tl.feature_enrichment(adata, "cell_type")
    return adata


def marking_features(adata, cell_type):
    """Features whose 25 most activated cells are pure enough, with their markers in the top 20."""
    acts = adata.obsm["X_sae"].toarray()
    is_type = (adata.obs["cell_type"] == cell_type).to_numpy()
    scores = adata.varm["X_sae_genes"]
    enr = adata.uns["X_sae_enrichment"]["cell_type"]
    col = list(enr["categories"]).index(cell_type)
    found = []
    for f in range(acts.shape[1]):
        if (acts[:, f] > 0).sum() < 5:
            continue
        purity = is_type[np.argsort(-acts[:, f], kind="stable")[:25]].mean()
        top20 = set(adata.var_names[np.argsort(-scores[:, f])[:20]])
        markers = [m for m in MARKERS[cell_type] if m in top20]
        if purity >= PURITY[cell_type] and len(markers) >= 2:
            found.append((f, purity, markers, float(enr["auroc"][f, col])))
    return found


@pytest.mark.parametrize("cell_type", list(MARKERS))
def test_pbmc_some_feature_marks_each_type(pbmc, cell_type):
    found = marking_features(pbmc, cell_type)
    assert found, f"no feature marks {cell_type}"
    best = max(found, key=lambda r: (r[1], r[3]))
    print(
        f"{cell_type}: feature {best[0]}, purity {best[1]:.2f}, markers {best[2]}, AUROC {best[3]:.3f}"
    )
    assert best[3] > 0.6  # the marking feature is also enriched over all cells of the type


def test_pbmc_automatic_labels_name_each_type(pbmc):
    """Must show: per type, a feature with >= 2 markers in its top 20 genes labelled that type."""
    table = scsae.tl.feature_table(pbmc)
    for cell_type, markers in MARKERS.items():
        found = []
        for f in table.index[table["cell_type"] == cell_type]:
            scores = np.nan_to_num(pbmc.varm["X_sae_genes"][:, f], nan=-np.inf)
            top20 = set(pbmc.var_names[np.argsort(-scores)[:20]])
            if len(top20 & set(markers)) >= 2:
                found.append(f)
        assert found, f"no feature labelled {cell_type} holds 2 of its markers"
        print(f"{cell_type}: features {found}, e.g. {table.loc[found[0], 'label']!r}")
    # specific labels: no gene names more than 10% of the labelled features
    live = table["n_cells"] > 0
    genes = pd.Series([g for s in table.loc[live, "specific_genes"] for g in s.split()])
    assert genes.value_counts().max() <= 0.1 * live.sum()


@pytest.mark.skipif(not HALLMARK.exists(), reason=f"shared test data not found at {SHARED}")
def test_pbmc_hallmark_table(pbmc, tmp_path):
    adata = pbmc.copy()
    scsae.tl.link_pathways(adata, HALLMARK, n_perm=20)
    res = adata.uns["X_sae_pathways"]
    assert res["scores"].shape[0] == adata.obsm["X_sae"].shape[1]  # no feature dropped
    assert res["params"]["n_sources_net"] == 50
    table = scsae.tl.feature_table(adata)
    enr = adata.uns["X_sae_enrichment"]["cell_type"]
    mono = int(np.argmax(enr["auroc"][:, list(enr["categories"]).index("CD14+ monocyte")]))
    # monocyte features carry innate-immune Hallmark sets, not e.g. MYC targets
    top = adata.uns["X_sae_pathways"]["sources"][np.argsort(-res["scores"][mono])[:5]]
    assert {
        "HALLMARK_COMPLEMENT",
        "HALLMARK_INFLAMMATORY_RESPONSE",
        "HALLMARK_INTERFERON_GAMMA_RESPONSE",
        "HALLMARK_TNFA_SIGNALING_VIA_NFKB",
        "HALLMARK_INTERFERON_ALPHA_RESPONSE",
        "HALLMARK_KRAS_SIGNALING_UP",
        "HALLMARK_ALLOGRAFT_REJECTION",
    } & set(top)
    table.to_csv(tmp_path / "features.csv")
    back = pd.read_csv(tmp_path / "features.csv", index_col=0)
    assert len(back) == table.shape[0]
    adata.write_h5ad(tmp_path / "pbmc.h5ad")
    again = ad.read_h5ad(tmp_path / "pbmc.h5ad")
    pd.testing.assert_frame_equal(scsae.tl.feature_table(again), table)
