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
``baseline_fvu_rank_k``
    FVU of the best rank-``k`` linear code of the same cells: the projection
    onto the top ``k`` principal axes of the *training* cells
    (:func:`rank_k_baseline`), ``k`` the SAE's number of active features.
    What an SAE gains over it is what sparsity (choosing ``k`` of many
    directions per cell instead of the same ``k`` for all) buys.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

DENSE_FREQUENCY = 0.1


def rank_k_baseline(blocks: Iterable[np.ndarray], rank: int) -> dict[str, np.ndarray]:
    """Mean and top ``rank`` principal axes (rank x dims) of the rows in ``blocks``.

    One pass of float64 sums (the dims x dims covariance), so any number of
    cells fits in memory.
    """
    n, total, gram = 0, 0.0, 0.0
    for block in blocks:
        x = block.astype(np.float64, copy=False)
        n += x.shape[0]
        total = total + x.sum(0)
        gram = gram + x.T @ x
    mean = np.asarray(total) / max(n, 1)
    cov = np.asarray(gram) / max(n, 1) - np.outer(mean, mean)
    _, vectors = np.linalg.eigh(cov)  # ascending eigenvalues
    components = vectors[:, ::-1][:, : max(0, rank)].T
    return {"mean": mean.astype(np.float32), "components": components.astype(np.float32)}


def linear_baseline_reconstruction(x: np.ndarray, baseline: dict[str, np.ndarray]) -> np.ndarray:
    """Projection of ``x`` onto the baseline's principal axes."""
    mean, components = baseline["mean"], baseline["components"]
    return mean + ((x - mean) @ components.T) @ components


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
        self.sum_sq_err_baseline: float | None = None
        self.n_active = 0
        self.feature_counts = np.zeros(n_features, dtype=np.int64)

    def update(
        self,
        x: np.ndarray,
        x_hat: np.ndarray,
        active_counts: np.ndarray,
        n_active: int,
        baseline_hat: np.ndarray | None = None,
    ) -> None:
        """Add a batch: inputs, reconstructions, per-feature active-cell counts (and baseline's)."""
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
        if baseline_hat is not None:
            err = x - baseline_hat.astype(np.float64, copy=False)
            self.sum_sq_err_baseline = (self.sum_sq_err_baseline or 0.0) + float(
                np.einsum("ij,ij->", err, err)
            )
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
        baseline = {}
        if self.sum_sq_err_baseline is not None:
            baseline["baseline_fvu_rank_k"] = (
                self.sum_sq_err_baseline / total_var if total_var > 0 else float("nan")
            )
        return {
            "fvu": float(fvu),
            "explained_variance": float(1 - fvu),
            "mean_l0": self.n_active / n,
            "dead_fraction": float((self.feature_counts == 0).mean()),
            "dense_fraction": float((freq > DENSE_FREQUENCY).mean()),
            "shrinkage": float(xhat_c_sq / xhat_c_dot_x_c) if xhat_c_dot_x_c != 0 else float("nan"),
            **baseline,
        }


def split_report(
    heldout: dict[str, float] | None, train: dict[str, float] | None
) -> dict[str, float]:
    """One metrics dict whose names say which cells each figure comes from.

    ``fvu``, ``explained_variance`` and ``baseline_fvu_rank_k`` (the headline)
    are held out; the other held-out metrics are prefixed ``heldout_``, the
    training ones ``train_``. Without held-out cells the headline is NaN and
    ``has_heldout`` is `False`.
    """
    nan = float("nan")
    out: dict[str, float] = {
        "fvu": heldout["fvu"] if heldout else nan,
        "explained_variance": heldout["explained_variance"] if heldout else nan,
        "baseline_fvu_rank_k": heldout.get("baseline_fvu_rank_k", nan) if heldout else nan,
        "has_heldout": heldout is not None,
    }
    for prefix, metrics in (("heldout", heldout), ("train", train)):
        for name, value in (metrics or {}).items():
            if prefix == "train" or name not in out:
                out[f"{prefix}_{name}"] = value
    return out
