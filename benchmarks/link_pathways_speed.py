"""Speed of ``scsae.tl.link_pathways`` at atlas scale.

2,000 SAE features x 20,000 genes x 5,000 gene sets (15-300 genes each), ``ulm``
(the default method). Target: under a minute on 2 CPU cores. Prints the time.

Run: ``python benchmarks/link_pathways_speed.py [--features 2000 --genes 20000 --sets 5000]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

import scsae


def make_problem(
    n_features: int, n_genes: int, n_sets: int, seed: int = 0
) -> tuple[AnnData, pd.DataFrame]:
    """An AnnData carrying SAE and gene-score results of the given size, and a gene-set network."""
    rng = np.random.default_rng(seed)
    n_cells = 50
    genes = np.array([f"G{i}" for i in range(n_genes)])
    adata = AnnData(
        sparse.csr_matrix((n_cells, n_genes), dtype=np.float32),
        var=pd.DataFrame(index=genes),
    )
    adata.obsm["X_sae"] = sparse.random(
        n_cells, n_features, density=0.1, format="csr", random_state=seed
    )
    adata.uns["X_sae"] = {
        "params": {"use_rep": "X_pca"},
        "decoder": rng.normal(size=(n_features, 8)),
    }
    adata.varm["X_sae_genes"] = rng.normal(size=(n_genes, n_features)).astype(np.float32)
    sizes = rng.integers(15, 300, size=n_sets)
    sources = np.repeat([f"SET{i}" for i in range(n_sets)], sizes)
    targets = np.concatenate([genes[rng.choice(n_genes, s, replace=False)] for s in sizes])
    net = pd.DataFrame({"source": sources, "target": targets})
    return adata, net


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=2000)
    parser.add_argument("--genes", type=int, default=20000)
    parser.add_argument("--sets", type=int, default=5000)
    parser.add_argument("--method", default="ulm")
    args = parser.parse_args()
    adata, net = make_problem(args.features, args.genes, args.sets)
    print(
        f"{args.features} features x {args.genes} genes x {args.sets} gene sets ({len(net)} edges)"
    )
    start = time.perf_counter()
    scsae.tl.link_pathways(adata, net, method=args.method, n_perm=0)  # one decoupler pass
    elapsed = time.perf_counter() - start
    res = adata.uns["X_sae_pathways"]
    print(f"link_pathways({args.method!r}): {elapsed:.1f} s; scores {res['scores'].shape}")


if __name__ == "__main__":
    main()
