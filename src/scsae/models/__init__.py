"""Model classes and their torch modules."""

from ._architectures import ARCHITECTURES, Architecture
from ._inference import INFERENCE, Inference
from ._sae_model import SparseAutoencoder
from ._samsvae_model import SAMSVAE
from ._samsvae_module import SAMSVAEModule
from ._sae_module import SAEConfig, SAEModule, SAEOutput

__all__ = [
    "ARCHITECTURES",
    "INFERENCE",
    "Architecture",
    "Inference",
    "SAMSVAE",
    "SAMSVAEModule",
    "SAEConfig",
    "SAEModule",
    "SAEOutput",
    "SparseAutoencoder",
]
