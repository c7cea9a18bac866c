"""pp namespace."""

from ._dosage import perturbation_dosage

__all__ = ["perturbation_dosage"]
