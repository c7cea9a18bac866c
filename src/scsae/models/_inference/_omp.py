"""Greedy sparse coding with exactly ``k`` atoms: orthogonal matching pursuit and matching pursuit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ._base import Inference, register
from ._common import dictionary_and_target, refit_on_support, resolve_k

if TYPE_CHECKING:
    from torch import Tensor

    from .._sae_module import SAEModule


@register
class OMP(Inference):
    """Non-negative orthogonal matching pursuit: exactly ``k`` atoms per cell.

    Per cell, ``k`` times: pick the unused dictionary row with the largest
    positive inner product with the residual, then refit all picked
    coefficients by non-negative least squares (one batched solve for all
    cells) and update the residual. Works on the SAE's decoder in its
    normalised space; the encoder is not used.

    Parameters
    ----------
    k
        Atoms per cell; `None` uses the SAE's ``k`` (same mean L0 as TopK).
    """

    name = "omp"
    orthogonal = True

    def __init__(self, *, k: int | None = None) -> None:
        self.k = None if k is None else int(k)

    @torch.no_grad()
    def encode(self, module: SAEModule, x: Tensor) -> Tensor:
        k = resolve_k(module, self.k)
        d, r = dictionary_and_target(module, x)
        n, n_features = r.shape[0], d.shape[0]
        support = torch.full((n, k), -1, dtype=torch.long, device=r.device)
        codes = r.new_zeros(n, n_features)
        used = torch.zeros(n, n_features, dtype=torch.bool, device=r.device)
        residual = r
        rows = torch.arange(n, device=r.device)
        for step in range(k):
            score = (residual @ d.T).masked_fill(used, -torch.inf)
            best = score.argmax(1)
            support[:, step] = best
            used[rows, best] = True
            if self.orthogonal:
                codes = refit_on_support(d, r, support[:, : step + 1])
            else:
                codes[rows, best] = score[rows, best].clamp_min(0)
            residual = r - codes @ d
        return codes.to(x.dtype)

    def params(self) -> dict[str, Any]:
        return {"inference": self.name, **({"k": self.k} if self.k is not None else {})}


@register
class MatchingPursuit(OMP):
    """Non-negative matching pursuit: like :class:`~scsae.models._inference.OMP` without the refit.

    Each picked atom keeps its inner product with the residual at the time it
    was picked (cheaper, less accurate). Parameters as :class:`~scsae.models._inference.OMP`.
    """

    name = "mp"
    orthogonal = False
