"""Plots: read what tl wrote into AnnData (or a model's history) and draw."""

from ._density import feature_density
from ._feature_obs import feature_obs
from ._features import features
from ._history import training_history
from ._pathways import pathways
from ._perturbation import ate_scatter, mask_heatmap, perturbation_embedding
from ._perturbation_effects import perturbation_effects
from ._recovery import inference_tradeoff, recovery_matrix
from ._top_genes import top_genes

__all__ = [
    "ate_scatter",
    "feature_density",
    "feature_obs",
    "features",
    "inference_tradeoff",
    "mask_heatmap",
    "pathways",
    "perturbation_effects",
    "perturbation_embedding",
    "recovery_matrix",
    "top_genes",
    "training_history",
]
