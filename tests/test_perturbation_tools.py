"""pp.perturbation_dosage, the perturbation simulator, tl splits/ATE and pl helpers (no training)."""

from __future__ import annotations

import matplotlib as mpl

mpl.use("Agg")

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import scsae
from scsae.datasets import simulate_perturbations


def _labelled(labels):
    adata = ad.AnnData(np.ones((len(labels), 3), dtype=np.float32))
    adata.obs["target"] = labels
    return adata


def test_dosage_basic(tmp_path):
    adata = _labelled(["A", "A+B", "non-targeting", "B+A", "C+C"])
    scsae.pp.perturbation_dosage(adata)
    d = adata.obsm["perturbation_dosage"]
    assert list(d.columns) == ["A", "B", "C"]
    np.testing.assert_array_equal(
        d.to_numpy(), [[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 1, 0], [0, 0, 2]]
    )
    info = adata.uns["perturbation_dosage"]
    assert info["n_control_cells"] == 1
    np.testing.assert_array_equal(info["n_cells"], [3, 2, 1])
    assert info["params"]["delimiter"] == "+"
    adata.write_h5ad(tmp_path / "d.h5ad")
    back = ad.read_h5ad(tmp_path / "d.h5ad")
    pd.testing.assert_frame_equal(back.obsm["perturbation_dosage"], d)


def test_dosage_options():
    adata = _labelled(["x|y", "ctrl", "NT", "y"])
    out = scsae.pp.perturbation_dosage(
        adata,
        control=["ctrl", "NT"],
        delimiter="|",
        perturbations=["y", "x", "z"],
        key_added="d",
        copy=True,
    )
    assert "d" not in adata.obsm
    assert list(out.obsm["d"].columns) == ["y", "x", "z"]
    np.testing.assert_array_equal(out.obsm["d"].to_numpy().sum(0), [2, 1, 0])


@pytest.mark.parametrize(
    ("labels", "kwargs", "match"),
    [
        (["A", "", "non-targeting"], {}, "missing or empty perturbation label"),
        (["A", None, "non-targeting"], {}, "missing or empty perturbation label"),
        (["A+", "non-targeting"], {}, "empty component"),
        (["A++B", "non-targeting"], {}, "empty component"),
        (
            ["A", "D"],
            {"perturbations": ["A", "B"]},
            r"Unknown perturbation\(s\) \['D'\]; the known perturbations are: A, B",
        ),
        (["A"], {"delimiter": ""}, "delimiter must be"),
        (["A", "B"], {"perturbations": ["A", "A", "B"]}, "duplicated"),
    ],
)
def test_dosage_errors_leave_adata_unchanged(labels, kwargs, match):
    adata = _labelled(labels)
    before = (set(adata.obsm), set(adata.uns))
    with pytest.raises(ValueError, match=match):
        scsae.pp.perturbation_dosage(adata, **kwargs)
    assert (set(adata.obsm), set(adata.uns)) == before


def test_dosage_missing_key():
    with pytest.raises(KeyError, match=r"not a column of adata.obs"):
        scsae.pp.perturbation_dosage(_labelled(["A"]), perturbation_key="gene")


def test_simulator_ground_truth():
    a = simulate_perturbations(random_state=3)
    b = simulate_perturbations(random_state=3)
    assert (a.X != b.X).nnz == 0
    sim = a.uns["simulation"]
    masks, emb = sim["masks"], sim["embeddings"]
    assert masks.shape == emb.shape == (6, 6)
    assert masks.any(1).all()
    assert (emb[masks == 0] == 0).all()
    assert len(sim["combinations"]) == 4
    labels = set(a.obs["target"])
    assert set(sim["combinations"]) <= labels
    assert "non-targeting" in labels
    assert a.varm["decoder"].shape == (100, 6)
    # z = z_basal + dosage @ embeddings
    scsae.pp.perturbation_dosage(a)
    d = a.obsm["perturbation_dosage"][list(sim["perturbations"])].to_numpy()
    np.testing.assert_allclose(a.obsm["z"], a.obsm["z_basal"] + d @ emb, atol=1e-4)
    with pytest.raises(ValueError, match="unknown perturbations"):
        simulate_perturbations(n_combinations=[("P0", "Q1")])
    with pytest.raises(ValueError, match="active entry per row"):
        simulate_perturbations(masks=np.zeros((2, 3)))


def test_split_cells_and_combinations():
    a = simulate_perturbations(n_cells_per_perturbation=20, n_control_cells=50)
    scsae.tl.perturbation_split(a, holdout="cells", test_size=0.25)
    frac = (a.obs["split"] == "test").groupby(a.obs["target"], observed=True).mean()
    assert np.allclose(frac, 0.25, atol=0.03)
    out = scsae.tl.perturbation_split(
        a, holdout="combinations", test_size=0.5, key_added="s2", copy=True
    )
    held = list(out.uns["s2"]["combinations"])
    assert len(held) == 2
    assert set(out.obs.loc[out.obs["s2"] == "test", "target"]) == set(held)
    with pytest.raises(ValueError, match="are not labels"):
        scsae.tl.perturbation_split(a, holdout="combinations", combinations=["P9+P8"])
    with pytest.raises(ValueError, match="'cells' or 'combinations'"):
        scsae.tl.perturbation_split(a, holdout="genes")


def test_observed_ate_and_recovery_metric():
    a = simulate_perturbations(n_cells_per_perturbation=30)
    ate = scsae.tl.average_treatment_effect(
        a, perturbations=["P0", "P0+P1"] if "P0+P1" in set(a.obs["target"]) else ["P0"]
    )
    assert ate.shape[1] == a.n_vars
    with pytest.raises(ValueError, match="No control cells"):
        scsae.tl.average_treatment_effect(a, control="ctrl")
    truth = np.array([[1, 0], [0, 1], [1, 1]])
    probs = pd.DataFrame([[0.1, 0.9], [0.8, 0.2], [0.7, 0.6]])  # columns swapped
    emb = 2.0 * truth
    # the matching comes from the coordinates, not from the scored probabilities
    assert (
        scsae.tl.mask_recovery_auroc(probs, truth, model_coords=emb[:, ::-1], true_coords=emb)
        == 1.0
    )
    assert scsae.tl.mask_recovery_auroc(probs, truth, model_coords=emb, true_coords=emb) == 0.0
    with pytest.raises(ValueError, match="perturbations"):
        scsae.tl.mask_recovery_auroc(probs.iloc[:2], truth, model_coords=emb, true_coords=emb)
    with pytest.raises(ValueError, match="must share their rows"):
        scsae.tl.mask_recovery_auroc(probs, truth, model_coords=emb[:2], true_coords=emb)


def _screen(effects: dict[str, np.ndarray], n: int = 40, seed: int = 0) -> ad.AnnData:
    """Poisson counts whose log rates add the given per-gene effects to a control profile."""
    base = np.log(np.random.default_rng(0).uniform(50, 200, 12))  # the same in every screen
    rng = np.random.default_rng(seed)
    labels, rows = [], []
    for label, effect in effects.items():
        labels += [label] * n
        rows.append(rng.poisson(np.exp(base + effect), size=(n, 12)))
    adata = ad.AnnData(np.vstack(rows).astype(np.float32))
    adata.obs["target"] = labels
    adata.obs_names = [f"c{i}" for i in range(adata.n_obs)]
    return adata


def test_evaluate_perturbation_model_baselines():
    rng = np.random.default_rng(1)
    a, b, c = (rng.normal(0, 0.5, 12) for _ in range(3))
    train = _screen({"non-targeting": 0 * a, "A": a, "B": b, "C": c, "A+C": a + c})
    test = _screen({"A+B": a + b, "B+C": b + c}, n=400, seed=2)
    base = scsae.tl.baseline_effects(train, ["A+B", "B+C", "D+A"])
    ate = scsae.tl.average_treatment_effect(train)
    np.testing.assert_allclose(base["additive"].loc["A+B"], ate.loc["A"] + ate.loc["B"])
    assert base["additive"].loc["D+A"].isna().all()  # D has no training cells
    np.testing.assert_allclose(base["mean"].loc["B+C"], ate.mean(0))
    assert (base["control"].to_numpy() == 0).all()
    before = test.copy()
    table, effects = scsae.tl.evaluate_perturbation_model(None, test, train, return_effects=True)
    assert table.index.names == ["method", "perturbation"]
    methods = ["baseline_additive", "baseline_mean", "baseline_control"]
    assert list(table.index.get_level_values(0).unique()) == methods
    assert list(table.loc["baseline_additive"].index) == ["A+B", "B+C", "mean"]
    # log-additive effects: the additive baseline is near perfect and ranks every
    # combination first; predicting no effect has no correlation and R2 <= 0
    assert (table.loc["baseline_additive", "pearson_all"] > 0.9).all(), table
    assert (table.loc["baseline_additive", "rank"] == 0).all()
    assert (
        table.loc[("baseline_control", "mean"), "pearson_top"]
        != table.loc[("baseline_control", "mean"), "pearson_top"]
    )
    assert (table.loc["baseline_control", "r2_all"] <= 0).all()
    assert table.loc[("baseline_additive", "A+B"), "n_cells"] == 400
    assert set(effects) == {"observed", *methods}
    assert effects["observed"].shape == (2, 12)
    assert list(test.obs.columns) == list(before.obs.columns) and set(test.obsm) == set(before.obsm)
    with pytest.raises(ValueError, match="not among"):
        scsae.tl.evaluate_perturbation_model(None, test, train, baselines=["linear"])
    with pytest.raises(ValueError, match="No cells labelled"):
        scsae.tl.evaluate_perturbation_model(None, test, train, perturbations=["C"])


def test_plots():
    masks = pd.DataFrame(
        np.random.default_rng(0).random((4, 3)),
        index=list("ABCD"),
        columns=["latent_0", "latent_1", "latent_2"],
    )
    assert scsae.pl.mask_heatmap(masks, show=False) is not None
    fig = scsae.pl.mask_heatmap(masks, perturbations=["B", "A"], return_fig=True)
    assert isinstance(fig, plt.Figure)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["B", "A"]
    # clustering puts perturbations that share dimensions next to each other
    blocks = pd.DataFrame(
        [[1, 0, 1, 0], [0, 1, 0, 1], [0.9, 0, 1, 0], [0, 1, 0, 0.9]], index=list("ABCD")
    )
    fig = scsae.pl.mask_heatmap(blocks, return_fig=True)
    rows = "".join(t.get_text() for t in fig.axes[0].get_yticklabels())
    assert {rows[:2], rows[2:]} in ({"AC", "BD"}, {"CA", "DB"}, {"AC", "DB"}, {"CA", "BD"})
    with pytest.raises(KeyError, match="not rows"):
        scsae.pl.mask_heatmap(masks, perturbations=["Z"])
    genes = [f"g{i}" for i in range(30)]
    rng = np.random.default_rng(1)
    obs = pd.DataFrame([rng.normal(size=30)], index=["A"], columns=genes)
    ev = pd.DataFrame({"pearson_top": [0.5], "pearson_all": [0.4]}, index=["A"])
    ev.attrs.update(
        observed=obs, predicted=obs + rng.normal(scale=0.1, size=obs.shape), n_top_genes=10
    )
    assert scsae.pl.ate_scatter(ev, "A", show=False) is not None
    # genes with nearly equal effects: their labels must still not overlap
    crowded = pd.DataFrame([np.r_[np.full(6, 2.0), np.zeros(24)]], index=["A"], columns=genes)
    ev.attrs.update(observed=crowded, predicted=crowded + 0.001 * np.arange(30))
    fig = scsae.pl.ate_scatter(ev, "A", n_labels=6, return_fig=True)
    fig.canvas.draw()
    # the text itself, without the line to its point
    boxes = [mpl.text.Text.get_window_extent(t) for t in fig.axes[0].texts]
    assert len(boxes) == 6
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    with pytest.raises(KeyError, match="was not evaluated"):
        scsae.pl.ate_scatter(ev, "B", show=False)
    a = simulate_perturbations(n_cells_per_perturbation=5, n_control_cells=5)
    a.obsm["X_latent"] = a.obsm["z"][:, :2]
    assert scsae.pl.perturbation_embedding(a, basis="latent", show=False) is not None
    with pytest.raises(KeyError, match=r"not in adata.obsm"):
        scsae.pl.perturbation_embedding(a, basis="umap", show=False)
    plt.close("all")
