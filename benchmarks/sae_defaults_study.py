"""Study behind the SAE's size defaults: held-out FVU and cell-type AUROC against dictionary size.

Usage: ``python benchmarks/sae_defaults_study.py [--embeddings pbmc,papalexi,multiome,scvi]
[--seeds 0,1] [--unseen]``. Needs ``../shared/data`` (Papalexi, muon multiome, Norman) for all
but pbmc. For each embedding and each number of training cells per feature (``n_features =
n_cells / c``, at most 16 x dims) it trains ``tl.sae`` with ``k = min(16, dims // 2)`` and
otherwise default settings (held-out split, model selection), and prints per run and per ``c``:
held-out FVU, the rank-k PCA baseline (fitted on the training cells), held-out / train FVU, and
the mean over groups of the best feature's AUROC for that group (``bulk_labels`` for pbmc;
8 k-means clusters of the embedding for all). ``--unseen`` runs the chosen defaults (``k`` selected) on
an embedding the study did not use (Norman 2019, PCA of log-normalised counts); ``--defaults``
runs the shipped defaults on every embedding and then on that unseen one.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scanpy as sc
import torch
from anndata import AnnData
from scipy.stats import rankdata

import scsae

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
CELLS_PER_FEATURE = (20, 10, 5, 2)


def _log_pca(adata: AnnData, n_comps: int) -> np.ndarray:
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    sc.pp.pca(adata, n_comps=n_comps, random_state=0)
    return adata.obsm["X_pca"]


def pbmc() -> AnnData:
    adata = sc.datasets.pbmc68k_reduced()
    out = AnnData(obs=adata.obs[["bulk_labels"]].copy())
    out.obsm["X_emb"] = adata.obsm["X_pca"]
    return out


def papalexi(n_cells: int = 4000) -> AnnData:
    adata = scsae.datasets.papalexi2021(DATA / "papalexi2021_sceptredata.h5ad")
    rng = np.random.default_rng(0)
    adata = adata[np.sort(rng.choice(adata.n_obs, n_cells, replace=False))].copy()
    return AnnData(obs=adata.obs[[]], obsm={"X_emb": _log_pca(adata, 50)})


def multiome() -> AnnData:
    import mudata as md

    mdata = md.read_h5mu(DATA / "muon_test_rna_atac.h5mu")
    blocks = []
    for mod in ("rna", "atac"):
        x = _log_pca(mdata[mod].copy(), 20)
        blocks.append(x / np.sqrt((x**2).sum(1).mean()))  # each modality: unit mean sq. norm
    return AnnData(obs=mdata.obs[[]], obsm={"X_emb": np.hstack(blocks).astype(np.float32)})


def norman_scvi() -> AnnData:
    import scvi

    adata = sc.read_h5ad(DATA / "norman2019_subset.h5ad")
    scvi.settings.seed = 0
    scvi.model.SCVI.setup_anndata(adata)
    model = scvi.model.SCVI(adata, n_latent=10)
    model.train(max_epochs=60, enable_progress_bar=False)
    return AnnData(obs=adata.obs[[]], obsm={"X_emb": model.get_latent_representation()})


def norman_pca() -> AnnData:
    adata = sc.read_h5ad(DATA / "norman2019_subset.h5ad")
    return AnnData(obs=adata.obs[[]], obsm={"X_emb": _log_pca(adata, 50)})


EMBEDDINGS = {"pbmc": pbmc, "papalexi": papalexi, "multiome": multiome, "scvi": norman_scvi}


def best_auroc(acts, labels: np.ndarray) -> float:
    """Mean over groups of the highest AUROC of any feature for membership in the group."""
    ranks = rankdata(acts.toarray(), axis=0)
    aucs = []
    for group in np.unique(labels):
        pos = labels == group
        n1, n0 = pos.sum(), (~pos).sum()
        if n1 < 10:
            continue
        aucs.append(((ranks[pos].sum(0) - n1 * (n1 + 1) / 2) / (n1 * n0)).max())
    return float(np.mean(aucs))


def run(adata: AnnData, **options) -> dict[str, float]:
    start = time.perf_counter()
    scsae.tl.sae(adata, use_rep="X_emb", **options)
    result = adata.uns["X_sae"]
    m, p = result["metrics"], result["params"]
    row = {
        "n_features": p["n_features"],
        "k": p["k"],
        "heldout_fvu": m["fvu"],
        "pca_rank_k": m["baseline_fvu_rank_k"],
        "vs_pca": m["fvu"] / m["baseline_fvu_rank_k"],
        "heldout_over_train": m["fvu"] / m["train_fvu"],
        "dead": m["train_dead_fraction"],
        "best_epoch": p["best_epoch"],
        "k_tried": "/".join(str(k) for k in result["k_selection"]["k"])
        if "k_selection" in result
        else "",
        "auroc_clusters": best_auroc(adata.obsm["X_sae"], adata.obs["clusters"].to_numpy()),
        "seconds": time.perf_counter() - start,
    }
    if "bulk_labels" in adata.obs:
        row["auroc_cell_type"] = best_auroc(
            adata.obsm["X_sae"], adata.obs["bulk_labels"].to_numpy()
        )
    return row


def prepare(adata: AnnData) -> AnnData:
    from sklearn.cluster import KMeans

    labels = KMeans(8, n_init=4, random_state=0).fit_predict(adata.obsm["X_emb"])
    adata.obs["clusters"] = labels.astype(str)
    return adata


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--embeddings", default=",".join(EMBEDDINGS))
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--unseen", action="store_true")
    parser.add_argument(
        "--defaults",
        action="store_true",
        help="the shipped defaults (k selected) on every embedding and the unseen one",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    if args.defaults:
        jobs = [(name, EMBEDDINGS[name], [None]) for name in args.embeddings.split(",")]
        jobs.append(("norman_pca (unseen)", norman_pca, [None]))
    elif args.unseen:
        jobs = [("norman_pca (unseen)", norman_pca, [None])]
    else:
        jobs = [(name, EMBEDDINGS[name], CELLS_PER_FEATURE) for name in args.embeddings.split(",")]
    for name, build, grid in jobs:
        adata = prepare(build())
        n_obs, n_dims = adata.n_obs, adata.obsm["X_emb"].shape[1]
        k = max(1, min(16, n_dims // 2))
        print(f"{name}: {n_obs} cells x {n_dims} dims", flush=True)
        for c in grid:
            for seed in seeds:
                if c is None:  # the defaults as shipped, k selected
                    options = {"random_state": seed}
                else:
                    n_features = int(max(k + 1, min(16 * n_dims, n_obs // c)))
                    options = {"n_features": n_features, "k": k, "random_state": seed}
                row = {
                    "embedding": name,
                    "cells_per_feature": c,
                    "seed": seed,
                    **run(adata, **options),
                }
                rows.append(row)
                print(
                    "  "
                    + ", ".join(
                        f"{key} {value:.3g}" if isinstance(value, float) else f"{key} {value}"
                        for key, value in row.items()
                    ),
                    flush=True,
                )
    table = pd.DataFrame(rows)
    summary = table.groupby(["embedding", "cells_per_feature"], dropna=False).mean(
        numeric_only=True
    )
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(summary.drop(columns=["seed"]).round(3).to_string())


if __name__ == "__main__":
    main()
