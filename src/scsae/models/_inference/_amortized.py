"""The SAE's own encoder: one matrix product and the architecture's activation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._base import Inference, register

if TYPE_CHECKING:
    from torch import Tensor

    from .._sae_module import SAEModule


@register
class Amortized(Inference):
    """Encode with the trained encoder (the cheap, amortised guess)."""

    name = "amortized"

    def encode(self, module: SAEModule, x: Tensor) -> Tensor:
        return module.encode(x)
