"""Recovery of a known dictionary by ``tl.sae`` with its defaults (``k`` selected on held-out cells).

Usage: ``python benchmarks/sae_recovery_defaults.py [--active 2,4,8,16] [--seeds 0] [--threads 1]
[--architecture topk]``.
Per true sparsity (``simulate_superposition(20_000, 32, 256, n_active=a)``, noise 0.01) and seed:
the ``k`` that ``tl.sae`` selected with the held-out score of every candidate it trained,
the share of the 256 true directions found at ``|cos| >= 0.9``, held-out FVU, the rank-k PCA
baseline and the wall time (which depends on the machine's load: report it beside ``uptime``).
It also prints, as a ceiling, how often orthogonal matching pursuit over the *true* dictionary
finds each cell's exact support: where even the truth cannot be read back cell by cell, no
dictionary learner can be expected to find it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.linear_model import orthogonal_mp

import scsae


def oracle_support(adata, n_active: int, n_cells: int = 2000) -> float:
    """Share of cells whose exact support OMP recovers over the true dictionary."""
    d = adata.uns["simulation"]["true_dictionary"]
    x = adata.obsm["X_emb"][:n_cells]
    codes = adata.obsm["true_codes"][:n_cells]
    codes = codes.toarray() if hasattr(codes, "toarray") else np.asarray(codes)
    fitted = orthogonal_mp(d.T, x.T, n_nonzero_coefs=n_active).T
    return float(((fitted != 0) == (codes != 0)).all(1).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--active", default="2,4,8,16")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--architecture", default=None, help="default: tl.sae's own")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for a in (int(x) for x in args.active.split(",")):
        for seed in (int(s) for s in args.seeds.split(",")):
            adata = scsae.datasets.simulate_superposition(
                20_000, 32, 256, n_active=a, random_state=seed
            )
            start = time.perf_counter()
            arch = {} if args.architecture is None else {"architecture": args.architecture}
            scsae.tl.sae(adata, use_rep="X_emb", random_state=seed, **arch)
            seconds = time.perf_counter() - start
            result = adata.uns["X_sae"]
            m, p = result["metrics"], result["params"]
            truth = adata.uns["simulation"]["true_dictionary"]
            recovered = (np.abs(truth @ result["decoder"].T).max(1) >= 0.9).mean()
            sel = result["k_selection"]
            tried = ", ".join(f"{k}: {s:.3f}" for k, s in zip(sel["k"], sel["score"], strict=True))
            print(
                f"{p['architecture']}, {a} active, seed {seed}: k {p['k']} selected (score by k: {tried}); "
                f"recovered {recovered:.1%}; held-out FVU {m['fvu']:.3f}, rank-k PCA "
                f"{m['baseline_fvu_rank_k']:.3f}; oracle OMP exact support "
                f"{oracle_support(adata, a):.1%}; {seconds:.0f} s",
                flush=True,
            )


if __name__ == "__main__":
    main()
