"""SAMS-VAE on unseen double perturbations (Norman et al. 2019 subset) beside the field's baselines.

The five doubles whose two singles are both in the file are held out whole
(:func:`scsae.tl.perturbation_split` with ``holdout="combinations"``); SAMS-VAE, its
no-mask (additive) variant and the conditional VAE are trained on the rest with the
model's defaults and one seed, and scored with :func:`scsae.tl.evaluate_perturbation_model`
beside the baselines from the training cells: additive (sum of the observed single
effects), mean (average observed perturbation effect) and control (no effect). Prints
the top-20 DE ATE Pearson per double and its mean, the all-gene Pearson, R² and rank
means, the held-out IWELBO of the three variants (nats per cell, higher is better) and
the split-half reliability of the doubles' own cells (the ceiling a prediction can reach).

``--diagnose`` adds, per model, the sum of the model's own predicted single effects
(``<model>:sum_of_singles``): where it is good and the model's double is not, the
composition (through the decoder) is at fault, not the singles.

``--validation`` scores on 20% of the training cells of every seen label instead (the
doubles stay unseen): the split on which to choose settings.

Usage::

    python benchmarks/samsvae_norman.py [--path FILE] [--epochs 120] [--threads 1] [--validation]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch

import scsae
from scsae.models._samsvae_model import log_normalize

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "norman2019_subset.h5ad"
KEY, CONTROL = "perturbation", "control"


def unseen_doubles(adata: ad.AnnData) -> list[str]:
    """Doubles whose two singles both have cells: the combinations to predict."""
    labels = set(adata.obs[KEY].astype(str))
    return sorted(p for p in labels if "+" in p and set(p.split("+")) <= labels)


def split_half_reliability(adata: ad.AnnData, doubles: list[str], seed: int = 0) -> pd.Series:
    """Top-20 ATE Pearson between two random halves of each double's cells (same controls)."""
    rng = np.random.default_rng(seed)
    labels = adata.obs[KEY].astype(str).to_numpy()
    base = log_normalize(adata.X[np.flatnonzero(labels == CONTROL)]).mean(0)
    out = {}
    for p in doubles:
        cells = rng.permutation(np.flatnonzero(labels == p))
        half = len(cells) // 2
        a = log_normalize(adata.X[cells[:half]]).mean(0) - base
        b = log_normalize(adata.X[cells[half:]]).mean(0) - base
        full = log_normalize(adata.X[cells]).mean(0) - base
        top = np.argsort(-np.abs(full))[:20]
        out[p] = float(np.corrcoef(a[top], b[top])[0, 1])
    return pd.Series(out)


def sum_of_singles_pearson(model, observed: pd.DataFrame, seed: int) -> pd.Series:
    """Top-20 ATE Pearson of the sum of the model's own predicted single effects, per double."""
    singles = sorted({g for p in observed.index for g in p.split("+")})
    ate = model.get_average_treatment_effect(singles, n_cells=2000, random_state=seed)
    out = {}
    for p, obs in observed.iterrows():
        pred = sum(ate.loc[g] for g in p.split("+")).loc[obs.index]
        top = np.argsort(-np.abs(obs.to_numpy()))[:20]
        out[p] = float(np.corrcoef(pred.to_numpy()[top], obs.to_numpy()[top])[0, 1])
    return pd.Series(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default=str(DEFAULT) if DEFAULT.exists() else None)
    parser.add_argument("--epochs", type=int, default=120)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", nargs="+", default=["samsvae", "additive", "cvae"])
    parser.add_argument("--model", default="{}", help="JSON of extra model arguments")
    parser.add_argument("--train", default="{}", help="JSON of extra train() arguments")
    parser.add_argument(
        "--diagnose", action="store_true", help="also score sums of predicted singles"
    )
    parser.add_argument(
        "--validation",
        action="store_true",
        help="score on 20%% of the training cells instead of the held-out doubles",
    )
    args = parser.parse_args()
    if args.path is None:
        parser.error("pass --path to norman2019_subset.h5ad")
    torch.set_num_threads(args.threads)

    adata = scsae.datasets.norman2019(args.path)
    doubles = unseen_doubles(adata)
    scsae.tl.perturbation_split(
        adata, perturbation_key=KEY, holdout="combinations", combinations=doubles
    )
    train = adata[adata.obs["split"] == "train"].copy()
    test = adata[adata.obs["split"] == "test"].copy()
    print(f"Norman 2019 subset: {adata.n_obs} cells x {adata.n_vars} genes")
    print(f"held out {doubles}: train {train.n_obs} cells, test {test.n_obs}")
    if args.validation:
        # choose settings here: 20% of the training cells of every label, the doubles unseen
        scsae.tl.perturbation_split(
            train, perturbation_key=KEY, holdout="cells", test_size=0.2, key_added="val"
        )
        test = train[train.obs["val"] == "test"].copy()
        train = train[train.obs["val"] == "train"].copy()
        doubles = [p for p in pd.unique(test.obs[KEY].astype(str)) if p != CONTROL]
        print(f"VALIDATION: train {train.n_obs} cells, validation {test.n_obs} (seen labels)")

    models, iwelbo, speed = {}, {}, {}
    for variant in args.variants:
        data = train.copy()
        scsae.SAMSVAE.setup_anndata(data, perturbation_key=KEY, control=CONTROL)
        model = scsae.SAMSVAE(
            data, variant=variant, random_state=args.seed, **json.loads(args.model)
        )
        t0 = time.perf_counter()
        model.train(max_epochs=args.epochs, random_state=args.seed, **json.loads(args.train))
        speed[variant] = model.train_params_["seconds_per_epoch"]
        iwelbo[variant] = model.get_iwelbo(test.copy(), n_particles=100, random_state=args.seed)
        models[variant] = model
        print(f"  trained {variant} in {time.perf_counter() - t0:.0f} s", flush=True)

    table, effects = scsae.tl.evaluate_perturbation_model(
        models,
        test,
        train,
        perturbation_key=KEY,
        control=CONTROL,
        random_state=args.seed,
        return_effects=True,
    )
    per_double = table["pearson_top"].unstack("method").loc[[*doubles, "mean"]]
    per_double = per_double[[*models, "baseline_additive", "baseline_mean", "baseline_control"]]
    if args.diagnose:
        combos = [p for p in doubles if "+" in p]
        for name, model in models.items():
            top = sum_of_singles_pearson(model, effects["observed"].loc[combos], args.seed)
            per_double[f"{name}:sum_of_singles"] = pd.concat([top, pd.Series({"mean": top.mean()})])
    if not args.validation:
        reliability = split_half_reliability(adata, doubles, seed=args.seed)
        per_double["split_half"] = [*reliability, reliability.mean()]
    pd.set_option("display.width", 160)
    print("\ntop-20 DE ATE Pearson on the unseen doubles (rows) by method (columns):")
    print(per_double.round(3).to_string())
    means = table.xs("mean", level="perturbation")[
        ["pearson_top", "pearson_all", "r2_top", "r2_all", "rank"]
    ]
    means["test_iwelbo"] = pd.Series(iwelbo)
    means["s_per_epoch"] = pd.Series(speed)
    print("\nmeans over the unseen doubles (rank: 0 best, 0.5 uninformative):")
    print(means.round(3).to_string())


if __name__ == "__main__":
    main()
