"""Tools: scanpy-style functions that write results into AnnData."""

from ._enrichment import feature_enrichment
from ._feature_genes import feature_genes
from ._feature_table import feature_table
from ._pathways import link_pathways
from ._perturbation import (
    average_treatment_effect,
    compare_perturbation_models,
    evaluate_ate,
    mask_recovery_auroc,
    perturbation_split,
)
from ._recovery import feature_recovery
from ._sae import sae
from ._stability import feature_stability

__all__ = [
    "average_treatment_effect",
    "compare_perturbation_models",
    "evaluate_ate",
    "feature_enrichment",
    "feature_genes",
    "feature_recovery",
    "feature_stability",
    "feature_table",
    "link_pathways",
    "mask_recovery_auroc",
    "perturbation_split",
    "sae",
]
