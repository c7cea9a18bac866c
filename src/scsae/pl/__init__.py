"""Plots: read what tl wrote into AnnData (or a model's history) and draw."""

from ._density import feature_density
from ._history import training_history
from ._perturbation import ate_scatter, mask_heatmap, perturbation_embedding

__all__ = [
    "ate_scatter",
    "feature_density",
    "mask_heatmap",
    "perturbation_embedding",
    "training_history",
]
