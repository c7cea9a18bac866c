"""Metrics against independent references (scikit-learn, direct numpy formulas)."""

import numpy as np
import pytest
from sklearn.metrics import r2_score

from scsae.models._metrics import MetricAccumulator


@pytest.fixture
def batch_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 7)) * np.arange(1, 8) + 3.0
    x_hat = 0.8 * x + rng.normal(scale=0.3, size=x.shape) + 0.5
    acts = rng.random((500, 20)) * (rng.random((500, 20)) < np.linspace(0.0, 0.5, 20))
    return x, x_hat, acts


def _accumulate(x, x_hat, acts, n_batches):
    acc = MetricAccumulator(acts.shape[1])
    for idx in np.array_split(np.arange(len(x)), n_batches):
        active = acts[idx] > 0
        acc.update(x[idx], x_hat[idx], active.sum(0), int(active.sum()))
    return acc


@pytest.mark.parametrize("n_batches", [1, 7])
def test_metrics_match_references(batch_data, n_batches):
    x, x_hat, acts = batch_data
    m = _accumulate(x, x_hat, acts, n_batches).result()
    assert m["explained_variance"] == pytest.approx(
        r2_score(x, x_hat, multioutput="variance_weighted"), rel=1e-9
    )
    assert m["fvu"] == pytest.approx(
        1 - r2_score(x, x_hat, multioutput="variance_weighted"), rel=1e-9
    )
    assert m["mean_l0"] == pytest.approx((acts > 0).sum(1).mean())
    freq = (acts > 0).mean(0)
    assert m["dead_fraction"] == pytest.approx((freq == 0).mean())
    assert m["dense_fraction"] == pytest.approx((freq > 0.1).mean())
    xc, xhc = x - x.mean(0), x_hat - x.mean(0)
    assert m["shrinkage"] == pytest.approx((xhc**2).sum() / (xhc * xc).sum(), rel=1e-9)


def test_shrinkage_detects_scaled_reconstructions(batch_data):
    x, _, acts = batch_data
    mean = x.mean(0)
    shrunk = mean + 0.7 * (x - mean)
    assert _accumulate(x, shrunk, acts, 3).result()["shrinkage"] == pytest.approx(0.7)
    assert _accumulate(x, x, acts, 3).result()["fvu"] == pytest.approx(0.0, abs=1e-12)
