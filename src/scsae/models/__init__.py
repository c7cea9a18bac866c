"""Model classes and their torch modules.

Each class's module loads on first use (see :mod:`scsae._utils._lazy`): ``import scsae``
loads no torch, Lightning or scvi-tools; both model classes stand on scvi-tools.
"""

from .._utils._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    globals(),
    {
        "ARCHITECTURES": "._architectures",
        "Architecture": "._architectures",
        "INFERENCE": "._inference",
        "Inference": "._inference",
        "SAEConfig": "._sae_config",
        "SAEModule": "._sae_module",
        "SAEOutput": "._sae_module",
        "SAMSVAE": "._samsvae_model",
        "SAMSVAEModule": "._samsvae_module",
        "SparseAutoencoder": "._sae_model",
    },
)
