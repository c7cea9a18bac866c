"""Quality metrics of an SAE, accumulated over batches in one pass.

Definitions (each computed here and nowhere else):

``fvu``
    Fraction of variance unexplained, ``sum ||x - x_hat||^2 / sum ||x - mean(x)||^2``
    over all cells and dims (``1 - fvu`` equals sklearn's variance-weighted R^2).
``explained_variance``
    ``1 - fvu``.
``mean_l0``
    Mean number of active features per cell.
``dead_fraction``
    Fraction of features active in no cell.
``dense_fraction``
    Fraction of features active in more than 10% of cells.
``shrinkage``
    Relative reconstruction bias ``E||x_hat_c||^2 / E<x_hat_c, x_c>`` with ``c``
    centred on the data mean (Wright & Sharkey 2024): 1 means unbiased
    magnitudes, below 1 means activations are shrunk.
"""

from __future__ import annotations

import numpy as np

DENSE_FREQUENCY = 0.1


class MetricAccumulator:
    """Running sums from which all metrics follow exactly.

    Parameters
    ----------
    n_features
        Dictionary size.
    """

    def __init__(self, n_features: int) -> None:
        self.n = 0
        self.sum_x: np.ndarray | float = 0.0
        self.sum_x_hat: np.ndarray | float = 0.0
        self.sum_sq_x = 0.0
        self.sum_sq_x_hat = 0.0
        self.sum_x_dot_x_hat = 0.0
        self.sum_sq_err = 0.0
        self.n_active = 0
        self.feature_counts = np.zeros(n_features, dtype=np.int64)

    def update(
        self, x: np.ndarray, x_hat: np.ndarray, active_counts: np.ndarray, n_active: int
    ) -> None:
        """Add a batch: inputs, reconstructions and per-feature active-cell counts."""
        x = x.astype(np.float64, copy=False)
        x_hat = x_hat.astype(np.float64, copy=False)
        self.n += x.shape[0]
        self.sum_x = self.sum_x + x.sum(0)
        self.sum_x_hat = self.sum_x_hat + x_hat.sum(0)
        self.sum_sq_x += float(np.einsum("ij,ij->", x, x))
        self.sum_sq_x_hat += float(np.einsum("ij,ij->", x_hat, x_hat))
        self.sum_x_dot_x_hat += float(np.einsum("ij,ij->", x, x_hat))
        err = x - x_hat
        self.sum_sq_err += float(np.einsum("ij,ij->", err, err))
        self.n_active += int(n_active)
        self.feature_counts += active_counts.astype(np.int64, copy=False)

    @property
    def feature_frequency(self) -> np.ndarray:
        """Fraction of cells in which each feature is active."""
        return self.feature_counts / max(self.n, 1)

    def result(self) -> dict[str, float]:
        """The metrics as plain floats."""
        n = max(self.n, 1)
        mean_x = np.asarray(self.sum_x) / n
        total_var = self.sum_sq_x - n * float(mean_x @ mean_x)
        fvu = self.sum_sq_err / total_var if total_var > 0 else float("nan")
        # centred second moments expanded into running sums
        xhat_c_sq = (
            self.sum_sq_x_hat
            - 2 * float(mean_x @ np.asarray(self.sum_x_hat))
            + n * float(mean_x @ mean_x)
        )
        xhat_c_dot_x_c = (
            self.sum_x_dot_x_hat
            - float(mean_x @ np.asarray(self.sum_x_hat))
            - float(mean_x @ np.asarray(self.sum_x))
            + n * float(mean_x @ mean_x)
        )
        freq = self.feature_frequency
        return {
            "fvu": float(fvu),
            "explained_variance": float(1 - fvu),
            "mean_l0": self.n_active / n,
            "dead_fraction": float((self.feature_counts == 0).mean()),
            "dense_fraction": float((freq > DENSE_FREQUENCY).mean()),
            "shrinkage": float(xhat_c_sq / xhat_c_dot_x_c) if xhat_c_dot_x_c != 0 else float("nan"),
        }
