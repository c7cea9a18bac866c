"""datasets namespace."""

from ._expression import simulate_hierarchical_expression
from ._perturbations import papalexi2021, simulate_perturbations
from ._superposition import simulate_superposition

__all__ = [
    "papalexi2021",
    "simulate_hierarchical_expression",
    "simulate_perturbations",
    "simulate_superposition",
]
