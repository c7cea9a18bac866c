"""Training-history and feature-density plots: rendered, with the right content."""

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

import scsae

FAST = {"max_epochs": 8, "batch_size": 256, "n_features": 64, "k": 3}


@pytest.fixture
def trained(adata):
    model = scsae.tl.sae(adata, use_rep="X_emb", return_model=True, **FAST)
    return adata, model


def test_training_history_from_adata_and_model(trained, tmp_path):
    adata, model = trained
    ax = scsae.pl.training_history(adata, show=False)
    assert ax.get_ylabel() == "fraction of variance unexplained (FVU)"
    assert "{" not in scsae.pl.training_history.__doc__  # placeholders filled
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"train_fvu", "validation_fvu"}
    np.testing.assert_allclose(
        lines["train_fvu"].get_ydata(), adata.uns["X_sae"]["history"]["train_fvu"]
    )
    assert ax.get_yscale() == "log"
    fig = scsae.pl.training_history(model, metrics=("train_l0",), return_fig=True)
    assert (
        fig.axes[0].get_lines()[0].get_ydata().tolist()
        == model.history["train_l0"]["train_l0"].tolist()
    )
    fig.savefig(tmp_path / "history.png")
    assert (tmp_path / "history.png").stat().st_size > 0
    with pytest.raises(KeyError, match="available"):
        scsae.pl.training_history(adata, metrics=("nope",))
    plt.close("all")


def test_feature_density(trained, tmp_path):
    adata, _ = trained
    _, ax = plt.subplots()
    out = scsae.pl.feature_density(adata, ax=ax, bins=10)
    assert out is ax
    freq = adata.uns["X_sae"]["feature_frequency"]
    counts = sum(patch.get_height() for patch in ax.patches)
    assert counts == (freq > 0).sum()
    assert ax.get_title() == f"64 features, {(freq == 0).sum()} dead"
    ax.figure.savefig(tmp_path / "density.png")
    with pytest.raises(KeyError, match=r"run scsae.tl.sae\(adata, key_added='other'\)"):
        scsae.pl.feature_density(adata, key="other")
    plt.close("all")
