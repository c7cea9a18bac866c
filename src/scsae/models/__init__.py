"""Model classes and their torch modules."""

from ._architectures import ARCHITECTURES, Architecture
from ._inference import INFERENCE, Inference
from ._sae_model import SparseAutoencoder
from ._sae_module import SAEConfig, SAEModule, SAEOutput
from ._samsvae_model import SAMSVAE
from ._samsvae_module import SAMSVAEModule

__all__ = [
    "ARCHITECTURES",
    "INFERENCE",
    "SAMSVAE",
    "Architecture",
    "Inference",
    "SAEConfig",
    "SAEModule",
    "SAEOutput",
    "SAMSVAEModule",
    "SparseAutoencoder",
]
