"""Preprocessing: checks and preparation of inputs.

Each function's module loads on first use (see :mod:`scsae._utils._lazy`).
"""

from .._utils._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    globals(),
    {
        "check_embedding": "._check_embedding",
        "perturbation_dosage": "._dosage",
    },
)
