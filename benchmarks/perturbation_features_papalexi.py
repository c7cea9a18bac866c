"""Perturbations meet features on Papalexi et al. 2021 (and the Norman et al. 2019 subset).

Papalexi (THP-1, IFN-gamma stimulated, CRISPR knockouts of 25 targets): scVI and an
SAE on its latent are trained on half of the cells (seeded split stratified by
target); every figure below is computed on the other half, held out.

1. ``tl.perturbation_effects`` (Mann-Whitney vs non-targeting cells, BH over the
   table): features decreased at q < 0.05 in the STAT1, JAK2, IFNGR1 and IFNGR2
   knockouts alike; baseline: the same with target labels permuted.
2. Their linked Hallmark set through the decoder route (``tl.decode_features`` +
   ``tl.link_pathways``, the 299 measured genes as universe); baseline: the Hallmark
   sets of the other features.
3. For how many of the 25 targets some feature responds specifically
   (Kendiukhov 2026: 6.2% of 48 TFs in a cell foundation model).
4. ``tl.steer`` held-out control cells down along that feature: Pearson of the
   decoded log2 fold change with the observed STAT1-knockout effect (held-out
   cells) over the top-20 DE genes (chosen on the training cells); baselines:
   random features steered down, and the training cells' own STAT1 effect
   (the reproducibility ceiling).

Norman subset (K562 CRISPRa, 5 doubles whose singles are in the file): scVI and an
SAE trained without the doubles; the doubles' feature effects (change in mean
activation) against the sum of their singles' (``additive_diff_mean``), beside the
split-half reliability of the doubles' own effects; over all live features and over
the features the double or a single moves (q < 0.05), with the slope of observed on
additive. The same for the scVI latent dimensions (``key="X_scVI"``).

Usage::

    python benchmarks/perturbation_features_papalexi.py [--epochs 100] [--threads 1]
        [--path FILE] [--norman FILE] [--gmt FILE]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scanpy as sc
import scvi
import torch

import scsae

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
IFN = ["STAT1", "JAK2", "IFNGR1", "IFNGR2"]
CONTROL = "non-targeting"


def _default(name: str) -> str | None:
    path = SHARED / name
    return str(path) if path.exists() else None


def fit_scvi_sae(train, args, name, *, size_factor_key=None):
    """scVI on the training cells' counts, then an SAE (explicit settings) on its latent."""
    scvi.settings.seed = args.seed
    scvi.model.SCVI.setup_anndata(train, size_factor_key=size_factor_key)
    cached = (
        Path(args.cache) / f"scvi_{name}_{args.epochs}_{args.n_latent}_{args.seed}"
        if args.cache
        else None
    )
    if cached is not None and cached.exists():
        vae = scvi.model.SCVI.load(str(cached), adata=train)
        print(f"  scVI: loaded from {cached}")
    else:
        vae = scvi.model.SCVI(train, n_latent=args.n_latent)
        start = time.perf_counter()
        vae.train(
            max_epochs=args.epochs,
            batch_size=256,
            enable_progress_bar=False,
            accelerator="cpu",
            train_size=0.9,
        )
        print(
            f"  scVI: {args.epochs} epochs in {time.perf_counter() - start:.0f} s (machine shared)"
        )
        if cached is not None:
            vae.save(str(cached))
    train.obsm["X_scVI"] = vae.get_latent_representation()
    sae = scsae.tl.sae(
        train,
        use_rep="X_scVI",
        n_features=args.n_features,
        k=args.k,
        max_epochs=args.sae_epochs,
        batch_size=256,
        random_state=args.seed,
        return_model=True,
    )
    print(
        f"  SAE: {args.n_features} features, k={args.k}, train FVU "
        f"{train.uns['X_sae']['metrics']['fvu']:.3f}"
    )
    return vae, sae


def encode(test, train, vae, sae):
    """Held-out cells through the trained scVI and SAE."""
    test.obsm["X_scVI"] = vae.get_latent_representation(test)
    acts, metrics, _ = sae.transform(test)
    test.obsm["X_sae"] = acts
    test.uns["X_sae"] = train.uns["X_sae"]
    print(f"  SAE held-out FVU {metrics['fvu']:.3f}")


def lognorm(adata, column="target"):
    """log2 of mean normalised expression per perturbation (pseudobulk), perturbations x genes."""
    x = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    x = x / x.sum(1, keepdims=True) * 1e4
    df = pd.DataFrame(x, columns=adata.var_names)
    df["t"] = adata.obs[column].to_numpy()
    return np.log2(df.groupby("t").mean() + 0.1)


def effects_table(adata):
    scsae.tl.perturbation_effects(adata, perturbation_key="target", control=CONTROL)
    return adata.uns["X_sae_perturbation_effects"]["table"]


def down_in_all(tab, targets, alpha=0.05):
    """Features decreased at q < alpha in every one of the targets."""
    sig = tab[(tab.qval < alpha) & (tab.diff_mean < 0)]
    sets = [set(sig[sig.perturbation == t].feature.astype(str)) for t in targets]
    return sorted(set.intersection(*sets), key=int)


def specificity(tab, alpha=0.05):
    """Per target: has any significant feature; one significant in <= 4 targets; in it alone."""
    sig = tab[tab.qval < alpha]
    n_targets_per_feature = sig.groupby("feature", observed=True).perturbation.nunique()
    out = {}
    for t in tab.perturbation.cat.categories:
        feats = sig[sig.perturbation == t].feature.astype(str)
        counts = n_targets_per_feature.reindex(feats).to_numpy()
        out[t] = (len(feats) > 0, bool((counts <= 4).any()), bool((counts == 1).any()))
    return pd.DataFrame(out, index=["any", "specific_le4", "only_this"]).T


def link_report(adata, hit_ids, table):
    """Per hit: top Hallmark set by calibrated z and the interferon sets' q; the IFN-linked hits."""
    res = adata.uns["X_sae_pathways"]
    sources = [str(x) for x in res["sources"]]
    ifn = [j for j, x in enumerate(sources) if "INTERFERON" in x]
    z, q = np.asarray(res["zscores"], float), np.nan_to_num(np.asarray(res["qvals"], float), nan=1)
    ifn_hits, top_ifn = [], []
    for f in hit_ids:
        top = int(np.nanargmax(np.nan_to_num(z[f], nan=-np.inf)))
        print(
            f"   feature {f} ({table.loc[f, 'top_genes_up']}): top set "
            f"{sources[top].removeprefix('HALLMARK_')} (z={z[f, top]:.1f}, q={q[f, top]:.2g}); "
            + ", ".join(
                f"{sources[j].removeprefix('HALLMARK_')} z={z[f, j]:.1f} q={q[f, j]:.2g}"
                for j in ifn
            )
        )
        if any(q[f, j] < 0.05 and z[f, j] > 0 for j in ifn):
            ifn_hits.append(f)
            if top in ifn and q[f, top] < 0.05:
                top_ifn.append(f)
    any_ifn = np.any([(q[:, j] < 0.05) & (z[:, j] > 0) for j in ifn], axis=0)
    return ifn_hits, top_ifn, float(np.mean(any_ifn[~np.asarray(res["empty"])]))


def papalexi(args):
    print("== Papalexi 2021 ==")
    adata = scsae.datasets.papalexi2021(args.path)
    adata.obs["target"] = adata.obs["target"].astype(str)
    scsae.tl.perturbation_split(
        adata, holdout="cells", test_size=args.test_size, random_state=args.seed
    )
    train = adata[adata.obs["split"] == "train"].copy()
    test = adata[adata.obs["split"] == "test"].copy()
    print(
        f"  {adata.n_obs} cells x {adata.n_vars} genes; train {train.n_obs}, held out {test.n_obs}"
    )
    vae, sae = fit_scvi_sae(train, args, "papalexi")
    encode(test, train, vae, sae)

    # 1. features down in all four IFN-gamma pathway knockouts (held out), and permuted labels
    tab = effects_table(test)
    n_targets = tab.perturbation.nunique()
    hits = down_in_all(tab, IFN)
    print(
        f"\n1. {n_targets} targets x {args.n_features} features; q<0.05: {(tab.qval < 0.05).sum()}"
    )
    print(f"   features decreased at q<0.05 in {'/'.join(IFN)} alike (held out): {hits}")
    perm = test.copy()
    rng = np.random.default_rng(args.seed)
    perm.obs["target"] = rng.permutation(perm.obs["target"].to_numpy())
    ptab = effects_table(perm)
    print(
        f"   baseline, permuted labels: q<0.05 calls {(ptab.qval < 0.05).sum()}, "
        f"features down in all four: {down_in_all(ptab, IFN)}"
    )
    down = tab[(tab.qval < 0.05) & (tab.diff_mean < 0)]
    for t in IFN:
        d = down[down.perturbation == t].sort_values("qval")
        print(
            f"   {t}: decreased "
            + ", ".join(f"{f} (q={q:.1g})" for f, q in zip(d.feature, d.qval, strict=True))
        )
    if not hits:
        print("   no feature is down in all four knockouts; stopping the Papalexi part here.")
        return
    sub = tab[tab.feature.astype(str).isin(hits) & tab.perturbation.isin(IFN)]
    print(
        sub[["perturbation", "feature", "diff_mean", "diff_frac", "effect", "qval"]].to_string(
            index=False
        )
    )
    mean_effect = sub.groupby("feature", observed=True).effect.mean().sort_values()
    strongest = int(mean_effect.index[0])

    # 2. decoder route: genes and Hallmark sets of the hits (299 measured genes are the universe)
    scsae.tl.decode_features(train, vae, n_cells=500, random_state=args.seed)
    net = scsae.datasets.hallmark(args.gmt)
    scsae.tl.link_pathways(train, net, random_state=args.seed)
    table = scsae.tl.feature_table(train)
    hit_ids = [int(f) for f in mean_effect.index]
    print(
        "\n2. decoder route (decode_features + link_pathways, ulm, calibrated q over all "
        f"features x sets; universe {train.uns['X_sae_pathways']['params']['n_universe']} genes)"
    )
    ifn_hits, top_ifn_hits, any_ifn = link_report(train, hit_ids, table)
    print(
        f"   hits with an interferon set at q < 0.05: {ifn_hits} ({len(ifn_hits)} of "
        f"{len(hit_ids)}); whose top set (by z) is interferon at q < 0.05: {top_ifn_hits}; "
        f"baseline, all scored features with an interferon set at q < 0.05: {any_ifn:.1%}"
    )
    # for comparison, the association route on log-normalised training cells
    assoc = train.copy()
    sc.pp.normalize_total(assoc, target_sum=1e4)
    sc.pp.log1p(assoc)
    scsae.tl.feature_genes(assoc, method="association")
    scsae.tl.link_pathways(assoc, net, random_state=args.seed)
    print("   association route (all active vs inactive training cells), same hits:")
    a_hits, a_top, a_any = link_report(assoc, hit_ids, scsae.tl.feature_table(assoc))
    print(
        f"   association route: hits with an interferon set at q < 0.05: {a_hits}; top set "
        f"interferon: {a_top}; all features: {a_any:.1%}"
    )
    # the feature to steer: the strongest hit linked to interferon (else the strongest hit)
    feat = ifn_hits[0] if ifn_hits else strongest

    # 3. specificity over the 25 targets
    spec = specificity(tab)
    print(
        f"\n3. targets (of {len(spec)}) with a feature at q<0.05: {int(spec['any'].sum())}; "
        f"with a feature significant in <= 4 targets: {int(spec['specific_le4'].sum())} "
        f"({spec['specific_le4'].mean():.1%}); in that target alone: {int(spec['only_this'].sum())} "
        f"({spec['only_this'].mean():.1%}). Kendiukhov 2026: 6.2% of 48 TFs."
    )
    print("   specific (<= 4 targets): " + ", ".join(spec.index[spec["specific_le4"]]))
    pspec = specificity(ptab)
    print(f"   baseline, permuted labels: {int(pspec['specific_le4'].sum())} targets")

    # 4. steering held-out control cells down along the feature vs the observed STAT1 effect
    obs_train, obs_test = lognorm(train), lognorm(test)
    eff_train = obs_train.loc["STAT1"] - obs_train.loc[CONTROL]
    eff_test = obs_test.loc["STAT1"] - obs_test.loc[CONTROL]
    top20 = eff_train.abs().sort_values(ascending=False).index[:20]
    ctrl = (test.obs["target"] == CONTROL).to_numpy()
    acts_ctrl = test.obsm["X_sae"][ctrl].toarray()
    strengths = train.uns["X_sae_genes"]["strength"]

    def steered_lfc(f):
        s = -float(strengths[f])
        base = scsae.tl.steer(test, vae, feature=f, strength=0.0, cells=ctrl, check_latent=False)
        moved = scsae.tl.steer(test, vae, feature=f, strength=s, cells=ctrl, check_latent=False)
        lfc = np.log2(moved.layers["normalized"]) - np.log2(base.layers["normalized"])
        return pd.Series(lfc.mean(0), index=test.var_names)

    alive = np.flatnonzero(strengths > 0)
    rand = rng.choice(alive[~np.isin(alive, [feat, strongest])], size=20, replace=False)
    r_rand = [np.corrcoef(steered_lfc(int(f))[top20], eff_test[top20])[0, 1] for f in rand]
    ceiling = np.corrcoef(eff_train[top20], eff_test[top20])[0, 1]
    print(
        f"\n4. steer held-out control cells ({ctrl.sum()}) down by each feature's typical activation"
    )
    for name, f in (("interferon-labelled hit", feat), ("strongest hit", strongest)):
        r = np.corrcoef(steered_lfc(f)[top20], eff_test[top20])[0, 1]
        print(
            f"   {name} {f} (strength -{strengths[f]:.2f}; mean in control cells "
            f"{acts_ctrl[:, f].mean():.2f}): Pearson with observed STAT1 KO, top-20 DE genes {r:.3f}"
        )
    print(
        f"   baseline, 20 random features steered down: mean {np.nanmean(r_rand):.3f} "
        f"(max {np.nanmax(r_rand):.3f})"
    )
    print(f"   ceiling, training cells' own STAT1 effect: {ceiling:.3f}")


def norman(args):
    print("\n== Norman 2019 subset ==")
    adata = sc.read_h5ad(args.norman)
    pert = adata.obs["perturbation"].astype(str)
    singles = set(pert[adata.obs["n_perturbed_genes"] == 1])
    doubles = sorted({p for p in pert if "+" in p and all(s in singles for s in p.split("+"))})
    train = adata[~pert.isin(doubles).to_numpy()].copy()
    print(f"  {adata.n_obs} cells; doubles held out of training: {doubles}")
    vae, sae = fit_scvi_sae(train, args, "norman", size_factor_key="total_counts")
    scvi.model.SCVI.setup_anndata(adata, size_factor_key="total_counts")
    encode(adata, train, vae, sae)
    rows = []
    for key in ("X_sae", "X_scVI"):
        scsae.tl.perturbation_effects(
            adata, key=key, perturbation_key="perturbation", control="control"
        )
        tab = adata.uns[f"{key}_perturbation_effects"]["table"]
        for d in doubles:
            t = tab[tab.perturbation == d]
            live = (t.mean_control > 0) | (t.mean_perturbed > 0)
            r_add = np.corrcoef(t.diff_mean[live], t.additive_diff_mean[live])[0, 1]
            # split-half reliability of the double's own effects
            cells = np.flatnonzero((pert == d).to_numpy())
            half = np.random.default_rng(args.seed).permutation(cells)
            ctrl = (pert == "control").to_numpy()
            acts = adata.obsm[key]
            acts = acts.toarray() if hasattr(acts, "toarray") else np.asarray(acts)
            m0 = acts[ctrl].mean(0)
            a = acts[half[: cells.size // 2]].mean(0) - m0
            b = acts[half[cells.size // 2 :]].mean(0) - m0
            r_half = np.corrcoef(a[live.to_numpy()], b[live.to_numpy()])[0, 1]
            # features the double or one of its singles moves (q < 0.05): Pearson and the slope
            # of observed on additive (1: additive; < 1: less than the sum, e.g. saturation)
            moved = tab[tab.perturbation.isin([d, *d.split("+")]) & (tab.qval < 0.05)].feature
            m = t.feature.isin(set(moved)).to_numpy()
            r_sig = (
                np.corrcoef(t.diff_mean[m], t.additive_diff_mean[m])[0, 1]
                if m.sum() > 2
                else np.nan
            )
            x, y = t.additive_diff_mean[m].to_numpy(), t.diff_mean[m].to_numpy()
            slope = float(x @ y / (x @ x)) if m.sum() > 0 else np.nan
            rows.append((key, d, r_add, r_half, int(m.sum()), r_sig, slope))
    out = pd.DataFrame(
        rows,
        columns=[
            "space",
            "double",
            "pearson_additive",
            "split_half",
            "n_moved",
            "pearson_moved",
            "slope_moved",
        ],
    )
    print(out.to_string(index=False, float_format="%.3f"))
    print(
        out.groupby("space")[["pearson_additive", "split_half", "pearson_moved", "slope_moved"]]
        .mean()
        .to_string(float_format="%.3f")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default=_default("papalexi2021_sceptredata.h5ad"))
    parser.add_argument("--norman", default=_default("norman2019_subset.h5ad"))
    parser.add_argument("--gmt", default=_default("h.all.v7.0.symbols.gmt"))
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--n-latent", type=int, default=10)
    parser.add_argument("--n-features", type=int, default=64)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--sae-epochs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-size", type=float, default=0.5, help="held-out fraction (Papalexi)")
    parser.add_argument("--cache", default=None, help="folder to save/load the scVI models")
    parser.add_argument("--skip", nargs="*", default=[], choices=["papalexi", "norman"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sc.settings.verbosity = 1
    if "papalexi" not in args.skip:
        papalexi(args)
    if "norman" not in args.skip:
        norman(args)


if __name__ == "__main__":
    main()
