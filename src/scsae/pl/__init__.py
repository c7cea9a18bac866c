"""Plots: read what tl wrote into AnnData (or a model's history) and draw."""

from ._density import feature_density
from ._history import training_history
from ._perturbation import ate_scatter, mask_heatmap, perturbation_embedding
from ._recovery import inference_tradeoff, recovery_matrix

__all__ = [
    "ate_scatter",
    "feature_density",
    "inference_tradeoff",
    "mask_heatmap",
    "perturbation_embedding",
    "recovery_matrix",
    "training_history",
]
