"""Dictionary learning by sparse coding: one training step's maths.

Used by :class:`~scsae.models._training.SAETrainingPlan` when a model is
trained with ``code_inference=...``: codes come from an inference strategy
instead of the encoder (the E-step of alternating sparse coding), the
decoder is updated by a gradient step on the reconstruction from those
codes (the M-step, as in online dictionary learning), and the encoder is
trained alongside to amortise codes over the current decoder, so that the
learned dictionary can be paired with any strategy, amortised included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from torch import Tensor

    from .._sae_module import SAEModule, SAEOutput
    from ._base import Inference


def check_code_inference(strategy: Inference) -> None:
    """ValueError for strategies that cannot produce training codes."""
    if strategy.needs_fit or strategy.name == "amortized":
        msg = (
            f"code_inference={strategy.name!r} cannot learn a dictionary: use a strategy that "
            "needs no fitting and is not the encoder itself ('omp', 'mp', 'ista', 'fista', 'ito')."
        )
        raise ValueError(msg)


def sparse_coding_step(
    module: SAEModule, x: Tensor, strategy: Inference
) -> tuple[SAEOutput, Tensor]:
    """Codes from ``strategy`` and the two losses of one step, on normalised ``x``.

    Returns
    -------
    ``(output, encoder_fvu)``: ``output.fvu`` is the FVU of the reconstruction
    from the inferred codes (gradients reach the decoder and its bias only);
    ``encoder_fvu`` is the FVU of the encoder's own reconstruction through the
    detached decoder (gradients reach the encoder only).
    """
    from .._sae_module import SAEOutput

    with torch.no_grad():
        codes = strategy.encode(module, x).detach()
    recon = module.decode(codes)
    total_variance = (x - x.mean(0)).pow(2).sum().clamp_min(1e-12)
    fvu = (x - recon).pow(2).sum() / total_variance
    w_dec, b_dec = module.W_dec.detach(), module.b_dec.detach()
    pre = (x - b_dec) @ module.W_enc.T + module.b_enc
    acts, sparsity_loss = module.activation(pre, w_dec.norm(dim=1))
    encoder_fvu = (x - (acts @ w_dec + b_dec)).pow(2).sum() / total_variance
    output = SAEOutput(codes, recon, fvu, fvu.new_zeros(()), sparsity_loss)
    return output, encoder_fvu
