"""Cell-type label thresholds on a second, simulated annotated data set.

The label rule of ``tl.feature_table`` (a type when AUROC >= 0.8 and purity >= 0.7;
"subset of <type>" when pure but not specific) was chosen on ``pbmc68k_reduced``.
Here it is checked where the truth is known: counts simulated for 6 cell types of
unequal size (45% down to 3%), each with its own marker genes, one type made of
two subtypes with their own markers, and two cell states shared across types
(a cycling and an interferon-like programme, each in ~25% of all cells). SAE with
the defaults on the PCA of log-normalised counts; per threshold pair it prints:

- types named: types with at least one feature labelled exactly that type;
- wrong types: type-labelled features whose top cells are mostly another type;
- state features typed: features that follow a shared state (correlation >= 0.5
  with its activity, < 0.3 with every type) but carry a type label;
- subtype features: features that follow one subtype, and how many are labelled
  "subset of <its type>" (the right answer: pure, not specific to the whole type).

Run: ``python benchmarks/feature_labels_simulated.py [--seeds 0 1 2]``.
"""

from __future__ import annotations

import argparse

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from scipy import sparse

import scsae

TYPES = {"A": 0.45, "B": 0.2, "C": 0.15, "D": 0.1, "E": 0.07, "F": 0.03}
SUBTYPED = "B"  # B = B1 + B2, each with markers of its own
GRID = [(0.7, 0.5), (0.7, 0.7), (0.8, 0.7), (0.8, 0.9), (0.9, 0.7), (0.9, 0.9)]


def simulate(seed: int, n_cells: int = 3000, n_genes: int = 1000) -> ad.AnnData:
    """Poisson counts: type markers, subtype markers, two shared states, background."""
    rng = np.random.default_rng(seed)
    types = rng.choice(list(TYPES), size=n_cells, p=list(TYPES.values()))
    sub = np.where(types == SUBTYPED, np.where(rng.random(n_cells) < 0.5, "B1", "B2"), "")
    base = rng.gamma(1.5, 0.4, n_genes)
    log_rate = np.log(base)[None, :].repeat(n_cells, 0)
    genes = rng.permutation(n_genes)
    blocks = {}
    start = 0
    for name in [*TYPES, "B1", "B2", "cycling", "interferon"]:
        size = 20 if len(name) == 1 else 12
        blocks[name] = genes[start : start + size]
        start += size
    for t in TYPES:
        log_rate[np.ix_(types == t, blocks[t])] += rng.uniform(1.0, 2.0, blocks[t].size)
    for s in ("B1", "B2"):
        log_rate[np.ix_(sub == s, blocks[s])] += rng.uniform(1.0, 2.0, blocks[s].size)
    states = {}
    for s in ("cycling", "interferon"):
        on = rng.random(n_cells) < 0.25
        level = on * rng.gamma(4, 0.3, n_cells)
        log_rate[:, blocks[s]] += level[:, None] * rng.uniform(0.8, 1.5, blocks[s].size)
        states[s] = level
    counts = rng.poisson(np.exp(log_rate) * rng.lognormal(0, 0.3, n_cells)[:, None])
    adata = ad.AnnData(
        sparse.csr_matrix(counts.astype(np.float32)),
        obs=pd.DataFrame(
            {"cell_type": pd.Categorical(types), "subtype": sub}, index=map(str, range(n_cells))
        ),
        var=pd.DataFrame(index=[f"G{i}" for i in range(n_genes)]),
    )
    for s, level in states.items():
        adata.obs[s] = level
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    sc.pp.pca(adata, n_comps=30, random_state=seed)
    return adata


def evaluate(adata: ad.AnnData, min_auroc: float, min_purity: float) -> dict:
    table = scsae.tl.feature_table(adata, min_auroc=min_auroc, min_purity=min_purity)
    acts = adata.obsm["X_sae"].toarray()
    live = (acts > 0).sum(0) >= 5
    types = adata.obs["cell_type"].to_numpy()
    kind = table["cell_type"].astype(str).to_numpy()
    named, wrong = set(), 0
    for f in np.flatnonzero(live):
        if kind[f] in TYPES:
            top = types[np.argsort(-acts[:, f], kind="stable")[:25]]
            wrong += (top == kind[f]).mean() < 0.5
            named.add(kind[f])

    def corr(x):
        a = acts - acts.mean(0)
        x = x - x.mean()
        return a.T @ x / (np.sqrt((a**2).sum(0) * (x**2).sum()) + 1e-12)

    type_corr = np.max([corr((types == t).astype(float)) for t in TYPES], axis=0)
    state_feats = [
        f
        for f in np.flatnonzero(live)
        if max(corr(adata.obs[s].to_numpy())[f] for s in ("cycling", "interferon")) >= 0.5
        and type_corr[f] < 0.3
    ]
    sub = adata.obs["subtype"].to_numpy()
    sub_corr = np.max([corr((sub == s).astype(float)) for s in ("B1", "B2")], axis=0)
    parent = corr((types == SUBTYPED).astype(float))
    sub_feats = [f for f in np.flatnonzero(live) if sub_corr[f] >= 0.5 and sub_corr[f] > parent[f]]
    return {
        "AUROC >=": min_auroc,
        "purity >=": min_purity,
        "types named (of 6)": len(named),
        "wrong types": int(wrong),
        "type-labelled": int(np.isin(kind[live], list(TYPES)).sum()),
        "state feats typed": f"{sum(kind[f] in TYPES for f in state_feats)}/{len(state_feats)}",
        "subtype feats 'subset of B'": (
            f"{sum(kind[f] == f'subset of {SUBTYPED}' for f in sub_feats)}/{len(sub_feats)}"
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    sc.settings.verbosity = 0
    pd.set_option("display.width", 200)
    for seed in args.seeds:
        adata = simulate(seed)
        scsae.tl.sae(adata, random_state=seed)  # the defaults
        scsae.tl.feature_genes(adata)
        scsae.tl.feature_enrichment(adata, "cell_type")
        n_live = int(((adata.obsm["X_sae"] > 0).sum(0) >= 5).sum())
        print(
            f"seed {seed}: {adata.n_obs} cells, {adata.obsm['X_sae'].shape[1]} features ({n_live} live)"
        )
        rows = [evaluate(adata, a, p) for a, p in GRID]
        print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
