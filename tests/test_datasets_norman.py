"""The Norman 2019 loader: the shared subset, conversion of PerturBench's file, offline errors."""

from __future__ import annotations

import sys
import types

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from _helpers import SHARED
from scipy import sparse

import scsae
from scsae.datasets._perturbations import counts_from_log1p, norman_from_perturbench

NORMAN = SHARED / "norman2019_subset.h5ad"
needs_norman = pytest.mark.skipif(not NORMAN.exists(), reason=f"{NORMAN} not present")
UNSEEN = ["KLF1+MAP2K6", "KLF1+TGFBR2", "MAP2K3+MAP2K6", "MAP2K3+SLC38A2", "MAPK1+TGFBR2"]


@needs_norman
def test_norman_subset_shape_and_labels():
    adata = scsae.datasets.norman2019(NORMAN)
    assert adata.shape == (3375, 500)
    labels = set(adata.obs["perturbation"].astype(str))
    singles = {p for p in labels if p != "control" and "+" not in p}
    doubles = {p for p in labels if "+" in p}
    assert (len(singles), len(doubles)) == (18, 15)
    assert sorted(p for p in doubles if set(p.split("+")) <= singles) == UNSEEN
    x = adata.X.toarray()
    assert np.array_equal(x, np.rint(x)) and x.min() == 0
    # the panel holds about 1% of each cell's library
    share = x.sum(1) / adata.obs["total_counts"].to_numpy()
    assert 0.001 < np.median(share) < 0.05


def _devel_like(counts: sparse.csr_matrix, library: np.ndarray, labels: list[str]) -> ad.AnnData:
    """An AnnData laid out as PerturBench's devel.h5ad: log1p(counts / library * 1e4)."""
    x = sparse.csr_matrix(sparse.diags(1e4 / library) @ counts)
    x.data = np.log1p(x.data).astype(np.float32)
    n = counts.shape[0]
    obs = pd.DataFrame(
        {"condition": labels, "dataset": ["norman19"] * (n - 2) + ["other", "other"]},
        index=[f"c{i}" for i in range(n)],
    )
    var = pd.DataFrame({"gene_symbol": [f"G{j}" for j in range(counts.shape[1])]})
    var.index = var.index.astype(str)
    return ad.AnnData(X=x, obs=obs, var=var)


def test_perturbench_file_converts_to_the_counts_behind_it():
    rng = np.random.default_rng(0)
    counts = sparse.csr_matrix(rng.poisson(0.5, (40, 30)).astype(np.float32))
    counts[:, 0] = 1  # every cell has a gene seen once
    library = rng.integers(5_000, 30_000, 40).astype(float)
    labels = ["control"] * 10 + ["A"] * 10 + ["B"] * 10 + ["A+B"] * 10
    out = norman_from_perturbench(_devel_like(counts, library, labels))
    assert out.n_obs == 38  # the two cells of another data set are dropped
    assert np.array_equal(out.X.toarray(), counts[:38].toarray())
    np.testing.assert_allclose(out.obs["total_counts"], library[:38])
    assert list(out.var_names[:2]) == ["G0", "G1"]
    assert out.obs["n_perturbed_genes"].tolist() == [0] * 10 + [1] * 20 + [2] * 8


def test_counts_from_log1p_refuses_data_that_are_not_scaled_counts():
    with pytest.raises(ValueError, match="raw counts"):
        counts_from_log1p(np.array([[0.3, 0.7, 1.9]]))


def test_norman_offline_names_path(monkeypatch, tmp_path):
    fake = types.ModuleType("pooch")

    def refuse(*args, **kwargs):
        msg = "Failed to establish a new connection"
        raise OSError(msg)

    fake.retrieve = refuse
    monkeypatch.setitem(sys.modules, "pooch", fake)
    before = sc.settings.datasetdir  # scanpy's settings cannot be monkeypatched (no deleter)
    sc.settings.datasetdir = tmp_path
    try:
        with pytest.raises(ConnectionError, match=r"path="):
            scsae.datasets.norman2019()
    finally:
        sc.settings.datasetdir = before
    with pytest.raises(FileNotFoundError, match=r"norman2019_subset\.h5ad"):
        scsae.datasets.norman2019(tmp_path / "missing.h5ad")
