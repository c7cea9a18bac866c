"""Speed of ``scsae.tl.link_pathways`` at atlas scale.

2,000 SAE features x 20,000 genes x 5,000 gene sets (15-300 genes each), ``ulm``
(the default method), one decoupler pass (``n_perm=0``). Target: under 10 s on 2
CPU cores. ``link_pathways`` computes ulm through a sparse product of the gene
scores with the sets' weights; the path before (``decoupler.mt.ulm`` itself, which
builds a dense genes x sets adjacency) is timed in the same process, interleaved
(``method_kwargs={"tval": True}``, decoupler's default, sends ulm to decoupler),
and the two results are checked equal. Prints each time, the medians and the
machine's load average (the machine may be shared).

Run: ``python benchmarks/link_pathways_speed.py [--features 2000 --genes 20000 --sets 5000
--repeats 3]``.
"""

from __future__ import annotations

import argparse
import os
import resource
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
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    adata, net = make_problem(args.features, args.genes, args.sets)
    print(
        f"{args.features} features x {args.genes} genes x {args.sets} gene sets ({len(net)} edges); "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start"
    )
    _ = scsae.tl.link_pathways  # import outside the timings
    runs = {"sparse ulm (now)": {}, "decoupler.mt.ulm (before)": {"tval": True}}
    times: dict[str, list[float]] = {name: [] for name in runs}
    scores = {}
    for i in range(args.repeats):
        for name, kwargs in runs.items():
            start = time.perf_counter()
            scsae.tl.link_pathways(adata, net, n_perm=0, method_kwargs=kwargs)
            times[name].append(time.perf_counter() - start)
            scores[name] = adata.uns["X_sae_pathways"]["scores"]
            print(f"  run {i}: {name}: {times[name][-1]:.1f} s (load {os.getloadavg()[0]:.1f})")
            if i == 0 and name == "sparse ulm (now)":  # peak so far: the problem + the sparse path
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
                print(f"  peak memory after the first sparse run: {peak:.1f} GB")
    for name, t in times.items():
        print(f"{name}: median {np.median(t):.1f} s, range {min(t):.1f}-{max(t):.1f} s")
    now, before = times["sparse ulm (now)"], times["decoupler.mt.ulm (before)"]
    diff = np.nanmax(np.abs(scores["sparse ulm (now)"] - scores["decoupler.mt.ulm (before)"]))
    print(
        f"speed-up {np.median(before) / np.median(now):.1f}x; largest score difference {diff:.1e}"
    )


if __name__ == "__main__":
    main()
