"""Datasets: simulators with ground truth and loaders of real data.

Each function's module loads on first use (see :mod:`scsae._utils._lazy`).
"""

from .._utils._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    globals(),
    {
        "hallmark": "._genesets",
        "norman2019": "._perturbations",
        "papalexi2021": "._perturbations",
        "progeny": "._genesets",
        "simulate_hierarchical_expression": "._expression",
        "simulate_perturbations": "._perturbations",
        "simulate_superposition": "._superposition",
    },
)
