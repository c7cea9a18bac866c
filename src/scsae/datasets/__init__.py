"""datasets namespace."""

from ._expression import simulate_hierarchical_expression
from ._genesets import hallmark, progeny
from ._perturbations import papalexi2021, simulate_perturbations
from ._superposition import simulate_superposition

__all__ = [
    "hallmark",
    "papalexi2021",
    "progeny",
    "simulate_hierarchical_expression",
    "simulate_perturbations",
    "simulate_superposition",
]
