"""Sparse autoencoders and sparse perturbation models for single-cell data."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("scsae")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

from . import datasets, models, pl, pp, tl
from .models import SAMSVAE, SparseAutoencoder

SAE = SparseAutoencoder

__all__ = [
    "SAE",
    "SAMSVAE",
    "SparseAutoencoder",
    "__version__",
    "datasets",
    "models",
    "pl",
    "pp",
    "tl",
]
