"""Sparse autoencoders and sparse perturbation models for single-cell data.

The namespaces and model classes load on first use, so ``import scsae`` does not
import torch, Lightning, scvi-tools, decoupler or matplotlib.
"""

from importlib.metadata import PackageNotFoundError, version

from ._utils._lazy import lazy_exports

try:
    __version__ = version("scsae")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    globals(),
    {
        "SAE": ".models:SparseAutoencoder",
        "SAMSVAE": ".models",
        "SparseAutoencoder": ".models",
    },
    submodules=["datasets", "models", "pl", "pp", "tl"],
)
__all__ = [*__all__, "__version__"]
