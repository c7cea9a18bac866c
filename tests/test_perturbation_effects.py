"""tl.perturbation_effects and pl.perturbation_effects on seeded simulated screens."""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
import pandas as pd
import pytest
from anndata import AnnData, read_h5ad
from scipy import sparse

import scsae

mpl.use("Agg")
import matplotlib.pyplot as plt


def _acts(rng, n, freq, scale=1.0):
    """Sparse non-negative activations: feature j active with probability freq[j], gamma size."""
    active = rng.random((n, freq.size)) < freq
    return np.where(active, rng.gamma(2.0, 0.5 * scale, (n, freq.size)), 0.0)


def screen(seed=0, n_ctrl=600, n_per=120, n_feat=40):
    """Control, A (feature 0 switched off), B (feature 1 up), A+B (both), C (no effect)."""
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.05, 0.6, n_feat)
    blocks, labels = [], []
    for label, n in (("ctrl", n_ctrl), ("A", n_per), ("B", n_per), ("A+B", n_per), ("C", n_per)):
        f = freq.copy()
        if "A" in label:
            f[0] = 0.02
        if "B" in label:
            f[1] = 0.95
        blocks.append(_acts(rng, n, f))
        labels += [label] * n
    adata = AnnData(np.zeros((len(labels), 3), dtype=np.float32))
    adata.obs["pert"] = pd.Categorical(labels)
    adata.obsm["X_sae"] = sparse.csr_matrix(np.vstack(blocks).astype(np.float32))
    return adata


def _table(adata, key="X_sae"):
    return adata.uns[f"{key}_perturbation_effects"]["table"]


@pytest.mark.parametrize("method", ["wilcoxon", "t-test"])
def test_planted_effects_found_and_only_them(method):
    adata = screen()
    scsae.tl.perturbation_effects(adata, perturbation_key="pert", control="ctrl", method=method)
    tab = _table(adata)
    assert len(tab) == 4 * 40
    hits = tab[tab.qval < 0.05]
    found = set(zip(hits.perturbation.astype(str), hits.feature.astype(str), strict=True))
    assert {("A", "0"), ("B", "1"), ("A+B", "0"), ("A+B", "1")} <= found
    # nothing else is planted: at most a couple of false calls among 156 null pairs
    assert len(found - {("A", "0"), ("B", "1"), ("A+B", "0"), ("A+B", "1")}) <= 3
    a0 = tab[(tab.perturbation == "A") & (tab.feature == "0")].iloc[0]
    assert a0.diff_mean < 0 and a0.diff_frac < -0.2 and a0.effect < -0.3
    b1 = tab[(tab.perturbation == "B") & (tab.feature == "1")].iloc[0]
    assert b1.diff_frac > 0.2 and b1.effect > 0.3
    assert a0.n_cells == 120 and a0.n_perturbed_genes == 1


def test_additive_expectation_of_combinations():
    adata = screen()
    scsae.tl.perturbation_effects(adata, perturbation_key="pert", control="ctrl")
    tab = _table(adata).set_index(["perturbation", "feature"])
    assert tab.loc[("A+B", "0"), "n_perturbed_genes"] == 2
    expected = tab.loc[("A", "3"), "diff_mean"] + tab.loc[("B", "3"), "diff_mean"]
    assert tab.loc[("A+B", "3"), "additive_diff_mean"] == pytest.approx(expected)
    assert tab.loc[("A", "3"), "additive_diff_mean"] != tab.loc[("A", "3"), "additive_diff_mean"]
    # the planted double is additive in feature 0 and 1: expectation tracks the observed change
    for feat in ("0", "1"):
        obs, add = tab.loc[("A+B", feat), ["diff_mean", "additive_diff_mean"]]
        assert np.sign(obs) == np.sign(add)


@pytest.mark.parametrize("method", ["wilcoxon", "t-test"])
def test_calibration_pseudo_perturbations(method):
    """Control cells split at random into two pseudo-perturbations: no more calls than nominal."""
    n_tests = n_false = 0
    raw = []
    for seed in range(5):
        rng = np.random.default_rng(100 + seed)
        freq = rng.uniform(0.02, 0.7, 60)
        acts = _acts(rng, 900, freq)
        labels = rng.permutation(np.repeat(["ctrl", "P1", "P2"], 300))
        adata = AnnData(np.zeros((900, 2), dtype=np.float32))
        adata.obs["pert"] = labels
        adata.obsm["X_sae"] = sparse.csr_matrix(acts)
        scsae.tl.perturbation_effects(adata, perturbation_key="pert", control="ctrl", method=method)
        tab = _table(adata)
        n_tests += len(tab)
        n_false += int((tab.qval < 0.05).sum())
        raw.append(tab.pval.to_numpy())
    raw = np.concatenate(raw)
    # under the null BH makes any call rare (P(any) <= 0.05 per screen): 5% of 600 tests is 30
    assert n_false <= 0.05 * n_tests / 5
    # raw p-values are uniform: 5% below 0.05 (binomial sd ~0.9%), and the test is not too strict
    assert (raw < 0.05).mean() < 0.08
    assert (raw < 0.5).mean() > 0.3


def test_any_obsm_dense_dataframe_and_signed():
    adata = screen()
    rng = np.random.default_rng(3)
    latent = rng.normal(size=(adata.n_obs, 5))
    latent[adata.obs["pert"].isin(["A", "A+B"]).to_numpy(), 2] -= 1.0
    adata.obsm["X_latent"] = pd.DataFrame(latent, index=adata.obs_names)
    scsae.tl.perturbation_effects(
        adata, key="X_latent", perturbation_key="pert", control="ctrl", method="t-test"
    )
    tab = _table(adata, "X_latent").set_index(["perturbation", "feature"])
    assert tab.loc[("A", "2"), "qval"] < 1e-6 and tab.loc[("A", "2"), "effect"] < -0.7
    assert tab.loc[("C", "2"), "qval"] > 0.05


def _sae_screen():
    """An SAE on a simulated embedding; feature 0's true code marks the "hit" cells."""
    from conftest import superposition

    x, _, codes = superposition(n_obs=600, seed=4)
    adata = AnnData(np.zeros((600, 2), dtype=np.float32))
    adata.obsm["X_emb"] = x
    adata.obs["pert"] = np.where(
        codes[:, 0] > 0, "hit", np.array(["ctrl", "other"])[np.arange(600) % 2]
    )
    scsae.tl.sae(adata, use_rep="X_emb", n_features=32, k=3, max_epochs=5, random_state=0)
    return adata


def test_sae_on_embedding_round_trip_and_copy(tmp_path):
    adata = _sae_screen()
    out = scsae.tl.perturbation_effects(
        adata, perturbation_key="pert", control="ctrl", key_added="pe", copy=True
    )
    assert "pe" not in adata.uns and "pe" in out.uns
    path = tmp_path / "a.h5ad"
    out.write_h5ad(path)
    back = read_h5ad(path).uns["pe"]
    pd.testing.assert_frame_equal(back["table"], out.uns["pe"]["table"], check_categorical=False)
    assert back["params"]["control"] == "ctrl" and back["params"]["method"] == "wilcoxon"


def test_min_cells_skips_small_groups():
    adata = screen()
    adata.obs["pert"] = adata.obs["pert"].astype(str)
    adata.obs.iloc[:5, 0] = "tiny"
    scsae.tl.perturbation_effects(adata, perturbation_key="pert", control="ctrl")
    params = adata.uns["X_sae_perturbation_effects"]["params"]
    assert list(params["skipped"]) == ["tiny"]
    assert "tiny" not in set(_table(adata).perturbation)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"key": "X_missing"}, KeyError, "not in obsm; available"),
        ({"perturbation_key": "nope"}, KeyError, "not in obs; columns"),
        ({"control": "NT"}, ValueError, "labels: 'A', 'A\\+B', 'B', 'C', 'ctrl'"),
        ({"method": "anova"}, ValueError, "choose 'wilcoxon'"),
        ({"min_cells": 1000}, ValueError, "control cells"),
    ],
)
def test_errors_leave_adata_untouched(kwargs, error, match):
    adata = screen()
    before = adata.copy()
    with pytest.raises(error, match=match):
        scsae.tl.perturbation_effects(
            adata, **{"perturbation_key": "pert", "control": "ctrl", **kwargs}
        )
    assert adata.uns.keys() == before.uns.keys()
    assert adata.obs.equals(before.obs)
    assert (adata.obsm["X_sae"] != before.obsm["X_sae"]).nnz == 0


def test_plot_clustered_dotplot_with_labels():
    adata = screen()
    scsae.tl.perturbation_effects(adata, perturbation_key="pert", control="ctrl")
    labels = {str(i): f"prog{i}" for i in range(40)}
    ax = scsae.pl.perturbation_effects(adata, labels=labels, show=False)
    rows = [t.get_text() for t in ax.get_yticklabels()]
    # only the two planted features are significant anywhere, labelled "i: label"
    assert sorted(rows) == ["0: prog0", "1: prog1"]
    assert {t.get_text() for t in ax.get_xticklabels()} == {"A", "A+B", "B", "C"}
    fig = scsae.pl.perturbation_effects(
        adata,
        features=[0, 1, 5],
        perturbations=["A", "B"],
        labels=None,
        cluster=False,
        return_fig=True,
    )
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "1", "5"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["A", "B"]
    plt.close("all")


def test_plot_auto_labels_from_feature_table():
    adata = _sae_screen()
    scsae.tl.feature_enrichment(adata, "pert")
    scsae.tl.perturbation_effects(adata, perturbation_key="pert", control="ctrl")
    ax = scsae.pl.perturbation_effects(adata, n_features=5, show=False)
    table = scsae.tl.feature_table(adata)
    for tick in ax.get_yticklabels():
        feat, label = tick.get_text().split(": ", 1)
        assert label == table.loc[int(feat), "label"]
    plt.close("all")


def test_plot_errors():
    adata = screen()
    with pytest.raises(KeyError, match=r"run scsae\.tl\.perturbation_effects"):
        scsae.pl.perturbation_effects(adata)
    scsae.tl.perturbation_effects(adata, perturbation_key="pert", control="ctrl")
    with pytest.raises(KeyError, match="perturbations not in the table"):
        scsae.pl.perturbation_effects(adata, perturbations=["Z"], show=False)
    with pytest.raises(IndexError, match="not in the table"):
        scsae.pl.perturbation_effects(adata, features=[99], show=False)


def test_papalexi_interferon_feature_down_in_pathway_knockouts():
    """Real screen: an SAE feature is switched off by every IFN-gamma pathway knockout alike."""
    from _helpers import SHARED

    path = SHARED / "papalexi2021_sceptredata.h5ad"
    if not path.exists():
        pytest.skip(f"{path} not found (shared data is only on the project's machines)")
    import scanpy as sc

    adata = scsae.datasets.papalexi2021(path)
    ifn = ["STAT1", "JAK2", "IFNGR1", "IFNGR2"]
    # up to 300 cells of each of the four, two unrelated targets and the controls
    rng = np.random.default_rng(0)
    obs = adata.obs.reset_index(drop=True)
    obs = obs[obs["target"].isin([*ifn, "non-targeting", "CUL3", "MYC"])]
    rows = (
        obs.groupby("target", observed=True)
        .sample(frac=1, random_state=0)
        .groupby("target", observed=True)
        .head(300)
        .index
    )
    adata = adata[np.sort(rows.to_numpy())].copy()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    sc.pp.pca(adata, n_comps=10, random_state=0)
    scsae.tl.sae(
        adata, use_rep="X_pca", n_features=32, k=3, max_epochs=5, batch_size=128, random_state=0
    )

    def down_in_all(ad):
        scsae.tl.perturbation_effects(ad, perturbation_key="target", control="non-targeting")
        tab = _table(ad)
        down = tab[(tab.qval < 0.05) & (tab.diff_mean < 0)]
        return set.intersection(*(set(down[down.perturbation == t].feature) for t in ifn))

    assert len(down_in_all(adata)) >= 1
    adata.obs["target"] = rng.permutation(adata.obs["target"].to_numpy())
    assert len(down_in_all(adata)) == 0


def test_sams_vae_latents_effects_only_on_masked_dimensions():
    """Simulated SAMS-VAE screen: the full latent moves on the true masks, the basal latent not."""
    sim = scsae.datasets.simulate_perturbations(
        n_cells_per_perturbation=80,
        n_control_cells=240,
        n_combinations=0,
        n_genes=20,
        random_state=0,
    )
    truth = {
        (str(p), str(d))
        for p, row in zip(
            sim.uns["simulation"]["perturbations"], sim.uns["simulation"]["masks"], strict=True
        )
        for d in np.flatnonzero(row)
    }
    for key in ("z", "z_basal"):
        scsae.tl.perturbation_effects(
            sim, key=key, perturbation_key="target", control="non-targeting", method="t-test"
        )
    tab = _table(sim, "z")
    calls = set(
        zip(
            tab.perturbation[tab.qval < 0.05].astype(str),
            tab.feature[tab.qval < 0.05].astype(str),
            strict=True,
        )
    )
    assert len(calls & truth) >= 0.8 * len(truth) and len(calls - truth) <= 1
    assert (_table(sim, "z_basal").qval < 0.05).sum() <= 1
