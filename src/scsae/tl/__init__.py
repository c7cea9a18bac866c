"""Tools: scanpy-style functions that write results into AnnData.

Each function's module loads on first use (see :mod:`scsae._utils._lazy`).
"""

from .._utils._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    globals(),
    {
        "average_treatment_effect": "._perturbation",
        "baseline_effects": "._perturbation",
        "compare_perturbation_models": "._perturbation",
        "decode_features": "._decode",
        "evaluate_ate": "._perturbation",
        "evaluate_perturbation_model": "._perturbation",
        "feature_enrichment": "._enrichment",
        "feature_genes": "._feature_genes",
        "feature_recovery": "._recovery",
        "feature_stability": "._stability",
        "feature_table": "._feature_table",
        "link_pathways": "._pathways",
        "mask_recovery_auroc": "._perturbation",
        "perturbation_effects": "._perturbation_effects",
        "perturbation_split": "._perturbation",
        "sae": "._sae",
        "steer": "._decode",
    },
)
