"""pl.features, pl.top_genes, pl.pathways, pl.feature_obs render to files with the right content."""

from __future__ import annotations

import anndata as ad
import matplotlib as mpl
import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread
from scipy import sparse

import scsae

mpl.use("Agg")
import matplotlib.pyplot as plt


@pytest.fixture
def done():
    """Small AnnData after tl.sae-like output, feature_genes, link_pathways and enrichment."""
    rng = np.random.default_rng(0)
    n, n_genes = 200, 40
    cell_type = np.repeat(["A", "B", "C", "D"], n // 4)
    acts = np.zeros((n, 6))
    for j, t in enumerate("ABCD"):
        acts[cell_type == t, j] = rng.gamma(3, 1, n // 4)
    acts[:, 5] = rng.random(n) * (rng.random(n) < 0.2)
    genes = np.array([f"G{i}" for i in range(n_genes)])
    expr = rng.poisson(1.0, (n, n_genes)).astype(np.float32)
    for j in range(4):
        expr[:, 5 * j : 5 * j + 5] += 3 * acts[:, [j]]
    adata = ad.AnnData(np.log1p(expr), var=pd.DataFrame(index=genes))
    adata.obs["cell_type"] = pd.Categorical(cell_type)
    adata.obsm["X_umap"] = rng.normal(size=(n, 2)) + np.repeat(np.eye(4, 2) * 5, n // 4, axis=0)
    adata.obsm["X_sae"] = sparse.csr_matrix(acts.astype(np.float32))
    adata.uns["X_sae"] = {"params": {"use_rep": "X_emb"}, "decoder": np.eye(6)}
    scsae.tl.feature_genes(adata)
    sets = {f"SET_{t}": list(genes[5 * j : 5 * j + 5]) for j, t in enumerate("ABCD")}
    sets["SET_NOISE"] = list(genes[25:35])
    scsae.tl.link_pathways(adata, sets, tmin=3, n_perm=10)
    scsae.tl.feature_enrichment(adata, "cell_type")
    return adata


def saved(fig, path):
    """Save, reload and check the image is a non-blank PNG."""
    fig.savefig(path, dpi=60)
    plt.close(fig)
    img = imread(path)
    assert img.ndim == 3
    assert (img[..., :3] < 0.9).mean() > 0.005  # something was drawn
    return img


def test_features_on_umap(done, tmp_path):
    before = list(done.obs.columns)
    table = scsae.tl.feature_table(done)
    fig = scsae.pl.features(done, [0, "2"], labels=table["label"], return_fig=True, show=False)
    titles = [a.get_title() for a in fig.axes if a.get_title()]
    assert titles[0].startswith("feature 0: cell_type: A") or titles[0].startswith("feature 0: A")
    assert titles[1].startswith("feature 2")
    saved(fig, tmp_path / "features.png")
    assert list(done.obs.columns) == before  # the user's AnnData is untouched
    ax = scsae.pl.features(done, 1, show=False)
    # one panel: the scatter carries one colour value per cell
    values = ax.collections[0].get_array()
    assert len(values) == done.n_obs
    plt.close("all")


def test_features_defaults_axes_colorbar_and_titles(done):
    """No selection: the most specific features, labelled; UMAP axes; labelled colour bars."""
    fig = scsae.pl.features(done, return_fig=True, show=False)
    panels = [a for a in fig.axes if a.get_title()]
    titles = [a.get_title() for a in panels]
    # the four cell-type features, one per type, not the noise feature 5
    assert sorted(int(t.split()[1].rstrip(":")) for t in titles) == [0, 1, 2, 3]
    assert all("|" in t or ": " in t for t in titles)  # titles carry the labels
    assert panels[0].get_xlabel() == "UMAP1" and panels[0].get_ylabel() == "UMAP2"
    bars = [a.get_ylabel() for a in fig.axes if not a.get_title() and a.get_ylabel()]
    assert bars and set(bars) == {"activation"}
    plt.close(fig)
    # without enrichment: the most frequent features
    done.uns.pop("X_sae_enrichment")
    from scsae.pl._features import default_features

    freq = (done.obsm["X_sae"].toarray() > 0).mean(0)
    assert default_features(done, "X_sae") == list(np.argsort(-freq, kind="stable")[:4])


def test_features_errors(done):
    with pytest.raises(KeyError, match="basis 'tsne' not found"):
        scsae.pl.features(done, 0, basis="tsne")
    with pytest.raises(IndexError, match="out of range"):
        scsae.pl.features(done, 6)
    with pytest.raises(ValueError, match="not a feature index"):
        scsae.pl.features(done, ["abc"])


def test_top_genes(done, tmp_path):
    fig = scsae.pl.top_genes(done, [0, 1, 2], n_genes=5, return_fig=True)
    panels = fig.axes
    assert len(panels) == 3
    for j, a in enumerate(panels):
        shown = {t.get_text() for t in a.get_yticklabels()}
        assert shown == {f"G{i}" for i in range(5 * j, 5 * j + 5)}
        assert a.get_xlabel() == "t statistic"
    saved(fig, tmp_path / "top_genes.png")
    _, ax = plt.subplots()
    assert scsae.pl.top_genes(done, 3, ax=ax, show=False) is ax
    with pytest.raises(ValueError, match="ax= takes one feature"):
        scsae.pl.top_genes(done, [0, 1], ax=ax)
    axs = scsae.pl.top_genes(done, [0, 1], show=False)
    assert len(axs) == 2
    plt.close("all")


@pytest.mark.parametrize("kind", ["heatmap", "dotplot"])
def test_pathways(done, tmp_path, kind):
    fig = scsae.pl.pathways(done, kind=kind, return_fig=True)
    ax = fig.axes[0]
    cols = [t.get_text() for t in ax.get_xticklabels()]
    rows = [t.get_text() for t in ax.get_yticklabels()]
    assert set(cols) == {"SET_A", "SET_B", "SET_C", "SET_D", "SET_NOISE"}
    assert {"0", "1", "2", "3"} <= set(rows)
    if kind == "heatmap":
        image = ax.images[0].get_array()
        assert image.shape == (len(rows), len(cols))
        # each marker feature is highest on its own set
        for r, name in enumerate(rows):
            if name in {"0", "1", "2", "3"}:
                assert cols[int(np.argmax(image[r]))] == f"SET_{'ABCD'[int(name)]}"
    saved(fig, tmp_path / f"pathways_{kind}.png")


def test_pathways_selection_and_errors(done):
    ax = scsae.pl.pathways(
        done, features=[3, 0], sources=["SET_D", "SET_A"], cluster=False, show=False
    )
    assert [t.get_text() for t in ax.get_yticklabels()] == ["3", "0"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["SET_D", "SET_A"]
    with pytest.raises(ValueError, match="kind="):
        scsae.pl.pathways(done, kind="bars")
    with pytest.raises(KeyError, match="not scored"):
        scsae.pl.pathways(done, sources=["SET_Z"])
    with pytest.raises(KeyError, match="link_pathways"):
        scsae.pl.pathways(done, pathways_key="none")
    plt.close("all")


def test_feature_obs(done, tmp_path):
    fig = scsae.pl.feature_obs(done, "cell_type", n_per_category=1, return_fig=True)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["A", "B", "C", "D"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "1", "2", "3"]  # the diagonal
    colours = ax.collections[0].get_array().reshape(4, 4)
    np.testing.assert_allclose(np.diag(colours), 1.0)
    assert ax.get_xlabel() == "cell_type"
    saved(fig, tmp_path / "feature_obs.png")
    ax = scsae.pl.feature_obs(done, "cell_type", features=[5], color="mean", show=False)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["5"]
    with pytest.raises(ValueError, match="color="):
        scsae.pl.feature_obs(done, "cell_type", color="size")
    with pytest.raises(KeyError, match="feature_enrichment"):
        scsae.pl.feature_obs(done, "batch")
    plt.close("all")
