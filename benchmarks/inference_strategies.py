"""Sparse inference strategies over learned dictionaries, scored against ground truth.

Simulates the foundation-issue data (256 unit directions in 32 dims, 4 active
per cell, noise 0.01; 20,000 training cells plus 10,000 held-out cells from the
same dictionary), learns two dictionaries, a TopK SAE trained end to end and
one learned by sparse coding (``train(code_inference="omp")``), and infers the
held-out codes with every strategy over each dictionary. Prints one table:
mean L0, FVU, dictionary MCC, code MCC, support F1 and wall time per 10,000
cells (``fit`` time of LISTA listed apart).

Run: ``python benchmarks/inference_strategies.py [--threads 1] [--n-train 20000]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

import scsae

STRATEGIES = [
    ("amortized", {}),
    ("omp", {}),
    ("mp", {}),
    ("ista", {"k": 4, "l1": 0.01}),
    ("fista", {"k": 4, "l1": 0.01}),
    ("fista", {"l1": 0.02, "debias": True}),
    ("ito", {"support": "fixed"}),
    ("ito", {"support": "free"}),
    ("lista", {}),
]


def label(name: str, options: dict) -> str:
    return name + (" " + ",".join(f"{k}={v}" for k, v in options.items()) if options else "")


def main() -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n-train", type=int, default=20_000)
    parser.add_argument("--n-test", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=80)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    n = args.n_train + args.n_test
    data = scsae.datasets.simulate_superposition(n, 32, 256, n_active=4, noise=0.01, random_state=0)
    train = data[: args.n_train].copy()
    test = data[args.n_train :].copy()
    noise_fvu = data.uns["simulation"]["noise_fvu"]

    dictionaries = {}
    for dictionary, code_inference in (("SAE (TopK)", None), ("sparse coding (OMP)", "omp")):
        scsae.SAE.setup_anndata(train, use_rep="X_emb")
        model = scsae.SAE(train, n_features=256, k=4)
        start = time.perf_counter()
        model.train(
            max_epochs=args.epochs,
            batch_size=1024,
            lr=1e-2,
            train_size=1.0,
            enable_progress_bar=False,
            code_inference=code_inference,
        )
        print(f"trained {dictionary} in {time.perf_counter() - start:.1f} s", flush=True)
        dictionaries[dictionary] = model

    rows = []
    for dictionary, model in dictionaries.items():
        for name, options in STRATEGIES:
            start = time.perf_counter()
            strategy = model.get_inference(name, **options)
            fit_s = time.perf_counter() - start
            start = time.perf_counter()
            acts, metrics, _ = model.transform(test, inference=strategy)
            encode_s = time.perf_counter() - start
            test.obsm["X_sae"] = acts
            test.uns["X_sae"] = {"decoder": model.decoder, "params": {}}
            rec = scsae.tl.feature_recovery(test).set_index("metric")["value"]
            rows.append(
                {
                    "dictionary": dictionary,
                    "strategy": label(name, options),
                    "mean_l0": metrics["heldout_mean_l0"],
                    "fvu": metrics["fvu"],
                    "dictionary_mcc": rec["dictionary_mcc"],
                    "code_mcc": rec["code_mcc"],
                    "support_f1": rec["support_f1"],
                    "s_per_10k_cells": encode_s * 10_000 / test.n_obs,
                    "fit_s": fit_s if strategy.needs_fit else 0.0,
                }
            )
            print(f"  {dictionary:22s} {rows[-1]['strategy']:30s} done", flush=True)
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(
            f"\n{args.n_test} held-out cells, noise floor FVU {noise_fvu:.5f}, "
            f"{torch.get_num_threads()} CPU thread(s), torch {torch.__version__}\n"
        )
        print(table.to_markdown(index=False, floatfmt=".4f"))
    return table


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
