"""tl.feature_enrichment and tl.feature_table."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.metrics import roc_auc_score

import scsae


@pytest.fixture
def labelled():
    """Cells of 3 types and 2 batches; features: type marker, batch artefact, dead, noise."""
    rng = np.random.default_rng(0)
    n = 240
    cell_type = np.repeat(["A", "B", "C"], n // 3)
    batch = np.tile(["b1", "b2"], n // 2)
    acts = np.zeros((n, 5))
    acts[cell_type == "A", 0] = rng.gamma(3, 1, (cell_type == "A").sum())
    acts[batch == "b2", 1] = rng.gamma(3, 1, (batch == "b2").sum())
    acts[:, 3] = rng.random(n) * (rng.random(n) < 0.3)
    acts[rng.choice(n, 20), 4] = -1.0  # negative codes are ranked correctly too
    genes = [f"G{i}" for i in range(30)]
    expr = rng.poisson(1.0, (n, 30)).astype(np.float32)
    expr[:, :3] += 3 * acts[:, [0]]
    adata = ad.AnnData(np.log1p(expr), var=pd.DataFrame(index=genes))
    adata.obs["cell_type"] = pd.Categorical(cell_type)
    adata.obs["batch"] = batch  # plain strings
    adata.obsm["X_sae"] = sparse.csr_matrix(acts.astype(np.float32))
    adata.uns["X_sae"] = {"params": {"use_rep": "X_emb"}, "decoder": np.eye(5)}
    return adata


def test_enrichment_matches_sklearn(labelled):
    scsae.tl.feature_enrichment(labelled, ["cell_type", "batch"])
    res = labelled.uns["X_sae_enrichment"]
    assert res["params"]["groupby"] == ["cell_type", "batch"]
    acts = labelled.obsm["X_sae"].toarray()
    for col in ("cell_type", "batch"):
        r = res[col]
        for j, cat in enumerate(r["categories"]):
            y = (labelled.obs[col] == cat).to_numpy()
            for f in (0, 1, 3, 4):
                assert r["auroc"][f, j] == pytest.approx(roc_auc_score(y, acts[:, f]), abs=1e-5)
            np.testing.assert_allclose(r["mean"][:, j], acts[y].mean(0), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(r["frac_active"][:, j], (acts[y] > 0).mean(0), atol=1e-6)
            for f in (0, 1, 3):  # purity: share of the top min(100, size) active cells
                top = np.argsort(-acts[:, f], kind="stable")[: min(100, y.sum())]
                top = top[acts[top, f] > 0]
                assert r["purity"][f, j] == pytest.approx(y[top].mean())
    assert res["cell_type"]["auroc"][0, 0] == 1.0
    assert res["cell_type"]["auroc"][2].tolist() == [0.5, 0.5, 0.5]  # dead feature


def test_missing_labels_and_merging(labelled):
    labelled.obs["with_nan"] = labelled.obs["cell_type"].astype(object)
    labelled.obs.iloc[:10, labelled.obs.columns.get_loc("with_nan")] = np.nan
    scsae.tl.feature_enrichment(labelled, "cell_type")
    scsae.tl.feature_enrichment(labelled, "with_nan")
    res = labelled.uns["X_sae_enrichment"]
    assert res["params"]["groupby"] == ["cell_type", "with_nan"]
    assert res["with_nan"]["n_cells"].sum() == labelled.n_obs - 10


@pytest.mark.parametrize(
    ("groupby", "err", "match"),
    [("nope", KeyError, "not in obs"), ("cont", ValueError, "looks continuous")],
)
def test_enrichment_errors(labelled, groupby, err, match):
    labelled.obs["cont"] = np.random.default_rng(0).normal(size=labelled.n_obs)
    with pytest.raises(err, match=match):
        scsae.tl.feature_enrichment(labelled, groupby)
    assert "X_sae_enrichment" not in labelled.uns


def test_feature_table_labels_and_export(labelled, tmp_path):
    scsae.tl.feature_genes(labelled)
    sets = {"MARK": ["G0", "G1", "G2", "G5", "G6"], "OTHER": [f"G{i}" for i in range(10, 20)]}
    scsae.tl.link_pathways(labelled, sets, tmin=3, n_perm=30)
    scsae.tl.feature_enrichment(labelled, ["cell_type", "batch"])
    table = scsae.tl.feature_table(labelled)
    assert table.index.tolist() == [0, 1, 2, 3, 4]  # like the columns of obsm['X_sae']
    expected = {
        "frequency",
        "n_cells",
        "mean_activation",
        "max_activation",
        "top_genes_up",
        "top_genes_down",
        "specific_genes",
        "top_pathway",
        "pathway_score",
        "pathway_q",
        "specific_pathway",
        "best_obs",
        "best_category",
        "auroc",
        "purity",
        "low_obs",
        "low_category",
        "low_auroc",
        "cell_type",
        "label",
    }
    assert expected <= set(table.columns)
    assert table.loc[0, "best_category"] == "A"
    assert table.loc[0, "auroc"] == 1.0
    assert table.loc[0, "purity"] == 1.0
    assert table.loc[0, "top_genes_up"].split(", ")[0] in {"G0", "G1", "G2"}
    assert table.loc[0, "top_pathway"] == "MARK"
    assert table.loc[0, "pathway_q"] < 0.05
    assert table.loc[0, "label"].startswith("cell_type: A | ")
    assert table.loc[0, "label"].endswith("MARK")
    assert table.loc[1, "best_obs"] == "batch"
    assert table.loc[1, "label"].startswith("batch: b2")  # a batch artefact shows as such
    assert table.loc[2, "label"] == "dead"
    assert table.loc[3, "cell_type"] == ""  # noise marks nothing
    # the cell-type marker is most depleted in another type (AUROC 1/3 vs all others)
    assert table.loc[0, "low_category"] in {"B", "C"}
    assert table.loc[0, "low_auroc"] == pytest.approx(0.25)
    assert table.loc[2, "n_cells"] == 0
    path = tmp_path / "features.csv"
    table.to_csv(path)
    back = pd.read_csv(path, index_col=0, keep_default_na=False)
    assert back.columns.tolist() == table.columns.tolist()
    assert back.index.tolist() == table.index.tolist()
    assert back.loc[0, "label"] == table.loc[0, "label"]


def test_subset_of_a_type_and_label_thresholds():
    """Pure but not specific -> "subset of"; specific and pure -> the type; mixed -> none."""
    rng = np.random.default_rng(1)
    n = 600
    cell_type = np.repeat(["T", "B", "Mono"], n // 3)
    is_t = cell_type == "T"
    acts = np.zeros((n, 3))
    acts[is_t, 0] = rng.gamma(3, 1, is_t.sum())  # all T cells
    part = is_t & (rng.random(n) < 0.3)
    acts[part, 1] = rng.gamma(3, 1, part.sum())  # 30% of T cells
    mixed = cell_type != "Mono"
    acts[mixed, 2] = rng.gamma(3, 1, mixed.sum())  # T and B together
    adata = ad.AnnData(np.zeros((n, 2), dtype=np.float32))
    adata.obs["cell_type"] = pd.Categorical(cell_type)
    adata.obsm["X_sae"] = sparse.csr_matrix(acts)
    adata.uns["X_sae"] = {"params": {"use_rep": "X_emb"}, "decoder": np.eye(3)}
    scsae.tl.feature_enrichment(adata, "cell_type")
    table = scsae.tl.feature_table(adata)
    assert table["cell_type"].tolist() == ["T", "subset of T", ""]
    assert table.loc[2, "purity"] == pytest.approx(0.5, abs=0.15)


def test_no_gene_names_more_than_a_tenth_of_the_labels():
    from scsae.tl._feature_table import specific_genes

    rng = np.random.default_rng(0)
    scores = rng.normal(size=(50, 40))
    scores[0] += 5  # a ubiquitous gene, top of every feature
    scores[1, :20] += 8  # high in half of the features
    genes = np.array([f"G{i}" for i in range(50)])
    labels = specific_genes(scores, np.ones(40, dtype=bool), genes, 3, max_share=0.1)
    counts = pd.Series([g for lab in labels for g in lab.split()]).value_counts()
    assert counts.max() <= 4


def test_feature_table_minimal_and_round_trip(labelled, tmp_path):
    table = scsae.tl.feature_table(labelled)  # only tl.sae has run
    assert set(table.columns) == {
        "frequency",
        "n_cells",
        "mean_activation",
        "max_activation",
        "label",
    }
    scsae.tl.feature_enrichment(labelled, "cell_type")
    labelled.write_h5ad(tmp_path / "t.h5ad")
    back = ad.read_h5ad(tmp_path / "t.h5ad")
    pd.testing.assert_frame_equal(scsae.tl.feature_table(back), scsae.tl.feature_table(labelled))


def test_feature_table_missing_sae(labelled):
    with pytest.raises(KeyError, match=r"scsae\.tl\.sae"):
        scsae.tl.feature_table(labelled, key="X_other")
