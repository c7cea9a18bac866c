"""Papalexi et al. 2021 (THP-1 ECCITE-seq): does the IFN-gamma knockout feature link to interferon?

SAE on the PCA of log-normalised counts (all 299 measured genes, so the PCA
loadings cover every gene and ``feature_genes`` takes the loadings route; the
association route is run beside it), Hallmark gene sets over the 299 measured
genes only, calibrated q-values (``n_perm`` null rounds). The feature most
depleted in STAT1/JAK2/IFNGR1/IFNGR2 knockouts (lowest AUROC of knockout vs
non-targeting cells) should link to an interferon set at q < 0.05. Baseline: the
same question for a random feature, and decoupler's own (uncalibrated) q-value.

Run: ``python benchmarks/pathways_papalexi.py [--seed 0 --n-perm 100]`` (needs
``../shared/data``: ``papalexi2021_sceptredata.h5ad`` and the Hallmark GMT).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc

import scsae

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
IFNG_KO = ["STAT1", "JAK2", "IFNGR1", "IFNGR2"]
INTERFERON = ["HALLMARK_INTERFERON_GAMMA_RESPONSE", "HALLMARK_INTERFERON_ALPHA_RESPONSE"]


def prepare(path: Path, seed: int) -> ad.AnnData:
    """Log-normalised counts, PCA of all measured genes, SAE, knockout-vs-control column."""
    adata = ad.read_h5ad(path)
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    sc.pp.pca(adata, n_comps=30, random_state=seed)
    scsae.tl.sae(adata, n_features=64, max_epochs=30, random_state=seed)
    target = adata.obs["target"].astype(str)
    adata.obs["ifng_ko"] = pd.Categorical(
        np.where(
            target.isin(IFNG_KO), "IFNG pathway KO", np.where(target == "non-targeting", "NT", None)
        )
    )
    scsae.tl.feature_enrichment(adata, "ifng_ko")
    return adata


def report(adata: ad.AnnData, feature: int, name: str) -> dict:
    res = adata.uns["X_sae_pathways"]
    sources = list(res["sources"])
    row = {"feature": feature, "route": adata.uns["X_sae_genes"]["params"]["method"], "who": name}
    for s in INTERFERON:
        j = sources.index(s)
        row[s.removeprefix("HALLMARK_") + " z"] = round(float(res["zscores"][feature, j]), 2)
        row[s.removeprefix("HALLMARK_") + " q"] = float(res["qvals"][feature, j])
        row[s.removeprefix("HALLMARK_") + " q decoupler"] = float(res["pvals_adj"][feature, j])
    order = np.argsort(-np.nan_to_num(res["zscores"][feature], nan=-np.inf))
    row["top set"] = sources[order[0]]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-perm", type=int, default=100)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    sc.settings.verbosity = 1
    adata = prepare(args.data / "papalexi2021_sceptredata.h5ad", args.seed)
    enr = adata.uns["X_sae_enrichment"]["ifng_ko"]
    ko = list(enr["categories"]).index("IFNG pathway KO")
    feature = int(np.nanargmin(enr["auroc"][:, ko]))
    live = np.flatnonzero(np.diff(adata.obsm["X_sae"].tocsc().indptr) > 0)
    other = int(np.random.default_rng(args.seed).choice(np.setdiff1d(live, [feature])))
    print(
        f"feature lowest in {'/'.join(IFNG_KO)} knockouts: {feature} "
        f"(AUROC knockout vs non-targeting {enr['auroc'][feature, ko]:.3f}); random feature {other}"
    )
    rows = []
    for method in ("auto", "association"):
        scsae.tl.feature_genes(adata, method=method)
        print(
            f"route {adata.uns['X_sae_genes']['params']['method']}: {adata.uns['X_sae_genes']['params']['route_reason']}"
        )
        scsae.tl.link_pathways(adata, args.data / "h.all.v7.0.symbols.gmt", n_perm=args.n_perm)
        print(f"universe: {adata.uns['X_sae_pathways']['params']['n_universe']} genes")
        rows += [report(adata, feature, "IFN-KO feature"), report(adata, other, "random feature")]
        q = np.nan_to_num(adata.uns["X_sae_pathways"]["qvals"], nan=1.0)
        print(f"features with any set at q < 0.05: {(q < 0.05).any(axis=1).mean():.1%}")
    pd.set_option("display.width", 200)
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
