"""Tools: scanpy-style functions that write results into AnnData."""

from ._enrichment import feature_enrichment
from ._feature_genes import feature_genes
from ._feature_table import feature_table
from ._pathways import link_pathways
from ._perturbation import (
    average_treatment_effect,
    baseline_effects,
    compare_perturbation_models,
    evaluate_ate,
    evaluate_perturbation_model,
    mask_recovery_auroc,
    perturbation_split,
)
from ._recovery import feature_recovery
from ._sae import sae

__all__ = [
    "average_treatment_effect",
    "baseline_effects",
    "compare_perturbation_models",
    "evaluate_ate",
    "evaluate_perturbation_model",
    "feature_enrichment",
    "feature_genes",
    "feature_recovery",
    "feature_table",
    "link_pathways",
    "mask_recovery_auroc",
    "perturbation_split",
    "sae",
]
