"""``tl.sae`` defaults on pbmc68k_reduced ``X_pca``: held-out figures per seed, cell-type AUROC, stability.

Usage: ``python benchmarks/sae_pbmc_defaults.py [--seeds 0,1,2,3,4] [--architecture topk]``.
Per seed: held-out FVU, the rank-k PCA baseline (fitted on the training cells), their ratio,
held-out / train FVU, and the best feature's AUROC for B, NK and CD14+ monocytes
(``bulk_labels``, over all cells); then for the first seed the share of features found again
at cosine >= 0.9 in 2 other seeds (:func:`scsae.tl.feature_stability`). For ``matryoshka`` it
also prints where the best feature of each type sits (first prefix = first eighth).
"""

from __future__ import annotations

import argparse

import numpy as np
import scanpy as sc
import torch
from scipy.stats import rankdata

import scsae

TYPES = ("CD19+ B", "CD56+ NK", "CD14+ Monocyte")


def best_features(acts, labels: np.ndarray) -> dict[str, tuple[float, int]]:
    """Per cell type, the highest AUROC of any feature and that feature's index."""
    ranks = rankdata(acts.toarray(), axis=0)
    out = {}
    for t in TYPES:
        pos = labels == t
        n1, n0 = pos.sum(), (~pos).sum()
        auc = (ranks[pos].sum(0) - n1 * (n1 + 1) / 2) / (n1 * n0)
        out[t] = (float(auc.max()), int(auc.argmax()))
    return out


def selected(result: dict) -> str:
    """The held-out score of each ``k`` tried, when ``tl.sae`` selected ``k``."""
    sel = result.get("k_selection")
    if sel is None:
        return ""
    return (
        " (selected; "
        + ", ".join(f"k {k}: {s:.3f}" for k, s in zip(sel["k"], sel["score"], strict=True))
        + ")"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--architecture", default="topk")
    parser.add_argument("--no-stability", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    for seed in seeds:
        adata = sc.datasets.pbmc68k_reduced()
        scsae.tl.sae(adata, use_rep="X_pca", architecture=args.architecture, random_state=seed)
        m, p = adata.uns["X_sae"]["metrics"], adata.uns["X_sae"]["params"]
        best = best_features(adata.obsm["X_sae"], adata.obs["bulk_labels"].to_numpy())
        where = ""
        if args.architecture == "matryoshka":
            first = max(1, round(p["n_features"] / 8))  # the default first prefix
            indices = ", ".join(str(i) for _, i in best.values())
            where = f" | feature index (first prefix < {first}): {indices}"
        print(
            f"seed {seed}: {p['n_features']} features, k {p['k']}{selected(adata.uns['X_sae'])}, "
            f"best epoch {p['best_epoch']}: "
            f"held-out FVU {m['fvu']:.3f}, rank-k PCA {m['baseline_fvu_rank_k']:.3f} "
            f"(ratio {m['fvu'] / m['baseline_fvu_rank_k']:.2f}), train FVU {m['train_fvu']:.3f} "
            f"(held-out/train {m['fvu'] / m['train_fvu']:.2f}); best AUROC "
            + ", ".join(f"{t} {a:.3f}" for t, (a, _) in best.items())
            + where,
            flush=True,
        )
        if seed == seeds[0] and not args.no_stability:
            scsae.tl.feature_stability(adata, n_seeds=2)
            st = adata.uns["X_sae"]["stability"]
            print(
                f"  stability: {st['stable_fraction']:.1%} of features found again at cosine >= 0.9 "
                f"in 2 other seeds (median lowest cosine {np.median(st['stability']):.2f})",
                flush=True,
            )


if __name__ == "__main__":
    main()
