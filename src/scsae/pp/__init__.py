"""pp namespace."""

from ._check_embedding import check_embedding
from ._dosage import perturbation_dosage

__all__ = ["check_embedding", "perturbation_dosage"]
