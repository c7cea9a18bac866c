"""Helpers shared by several test modules (importable: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from scipy import sparse

#: ../shared/data beside the repository; tests that need it skip where it is absent
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def programme_counts(n_cells=300, n_genes=120, n_prog=6, genes_per=12, seed=0):
    """Log-normalised counts driven by known, disjoint gene programmes.

    Returns ``(adata, activities, gene_sets, rng)``; ``rng`` continues the same
    stream for callers that draw more.
    """
    rng = np.random.default_rng(seed)
    genes = np.array([f"G{i}" for i in range(n_genes)])
    members = rng.permutation(n_genes)[: n_prog * genes_per].reshape(n_prog, genes_per)
    act = np.zeros((n_cells, n_prog))
    for i in range(n_cells):
        ks = rng.choice(n_prog, rng.integers(1, 3), replace=False)
        act[i, ks] = rng.gamma(4, 0.5, ks.size)
    weights = np.zeros((n_prog, n_genes))
    for k in range(n_prog):
        weights[k, members[k]] = rng.uniform(1, 2, genes_per)
    counts = rng.poisson(rng.gamma(2, 0.5, n_genes) * np.exp(0.6 * act @ weights))
    adata = ad.AnnData(sparse.csr_matrix(counts.astype(np.float32)), var=pd.DataFrame(index=genes))
    sc.pp.normalize_total(adata, target_sum=1e3)
    sc.pp.log1p(adata)
    sets = {f"PROG{k}": list(genes[members[k]]) for k in range(n_prog)}
    return adata, act, sets, rng
