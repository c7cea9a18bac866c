"""pp.check_embedding: each problem an SAE fits badly is warned about, clean data pass."""

import warnings

import numpy as np
import pytest
import scanpy as sc
from anndata import AnnData

import scsae


def _adata(x):
    return AnnData(obsm={"X_emb": np.asarray(x, dtype=np.float32)})


@pytest.fixture
def clean():
    rng = np.random.default_rng(0)
    return rng.standard_normal((1000, 8)).astype(np.float32)


def test_clean_embeddings_pass_silently(clean):
    # loaded outside the check: reading the h5ad warns on some anndata/pandas pairs
    pbmc = sc.datasets.pbmc68k_reduced()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = scsae.pp.check_embedding(_adata(clean), use_rep="X_emb")
        scsae.pp.check_embedding(pbmc, use_rep="X_pca")
    assert report["n_outliers"] == 0 and report["constant_dims"] == []
    assert report["duplicate_fraction"] == 0 and report["mean_offset"] < 1


@pytest.mark.parametrize(
    ("problem", "match"),
    [
        ("outlier", "1 of 1000 sampled cells lie more than 10 RMS"),
        ("offset", "mean lies .* RMS distances from the origin"),
        ("duplicates", "5.0% of sampled cells are exact duplicates"),
        ("constant", r"dims \[3\] are \(near-\)constant"),
    ],
)
def test_each_problem_is_warned_and_adata_untouched(clean, problem, match):
    x = clean.copy()
    if problem == "outlier":
        x[17] = 1000
    elif problem == "offset":
        x += 100
    elif problem == "duplicates":
        x[:50] = x[50:100]
    else:
        x[:, 3] = 2.5
    adata = _adata(x)
    with pytest.warns(UserWarning, match=match):
        scsae.pp.check_embedding(adata, use_rep="X_emb")
    np.testing.assert_array_equal(adata.obsm["X_emb"], x)
    assert list(adata.obsm) == ["X_emb"] and not adata.uns
    # the model runs the same checks at setup
    with pytest.warns(UserWarning, match=match):
        scsae.SAE.setup_anndata(adata, use_rep="X_emb")
