"""Plots: read what tl wrote into AnnData (or a model's history) and draw.

Each function's module (and matplotlib) loads on first use (see :mod:`scsae._utils._lazy`).
"""

from .._utils._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    globals(),
    {
        "ate_scatter": "._perturbation",
        "feature_browser": "._browser",
        "feature_density": "._density",
        "feature_obs": "._feature_obs",
        "features": "._features",
        "inference_tradeoff": "._recovery",
        "mask_heatmap": "._perturbation",
        "pathways": "._pathways",
        "perturbation_effects": "._perturbation_effects",
        "perturbation_embedding": "._perturbation",
        "recovery_matrix": "._recovery",
        "top_genes": "._top_genes",
        "training_history": "._history",
    },
)
