"""L1 sparse coding over the trained dictionary: ISTA and FISTA, warm-started from the encoder."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ._base import Inference, register
from ._common import (
    check_positive,
    dictionary_and_target,
    lipschitz,
    refit_on_support,
    resolve_k,
    topk_project,
)

if TYPE_CHECKING:
    from torch import Tensor

    from .._sae_module import SAEModule


@register
class ISTA(Inference):
    """Non-negative L1 sparse coding by iterative shrinkage-thresholding (ISTA).

    Minimises ``0.5 ||r - a D||^2 + l1 * sum(a)`` over ``a >= 0`` for each cell
    (``D`` the decoder, ``r`` the input minus the decoder bias, all in the
    SAE's normalised space) with proximal gradient steps of size ``1 / L``,
    ``L = ||D||_2^2``, starting from the encoder's codes.

    Parameters
    ----------
    l1
        L1 penalty (inputs have mean squared norm 1): larger is sparser.
    n_iter
        Proximal gradient steps.
    k
        If given, keep the ``k`` largest codes per cell after the iterations
        and refit them (exact L0 ``k``, comparable with TopK at the same ``k``).
    debias
        Refit the selected codes by non-negative least squares on their
        support, removing the L1 shrinkage (always on when ``k`` is given).
    warm_start
        Start from the encoder's codes (otherwise from zero).
    """

    name = "ista"
    accelerated = False

    def __init__(
        self,
        *,
        l1: float = 0.02,
        n_iter: int = 100,
        k: int | None = None,
        debias: bool = False,
        warm_start: bool = True,
    ) -> None:
        check_positive("l1", l1)
        check_positive("n_iter", n_iter)
        self.l1 = float(l1)
        self.n_iter = int(n_iter)
        self.k = None if k is None else int(k)
        self.debias = bool(debias) or k is not None
        self.warm_start = bool(warm_start)

    @torch.no_grad()
    def encode(self, module: SAEModule, x: Tensor) -> Tensor:
        d, r = dictionary_and_target(module, x)
        step = 1.0 / lipschitz(d)
        a = (
            module.encode(x).detach().to(r.dtype)
            if self.warm_start
            else r.new_zeros(r.shape[0], d.shape[0])
        )
        a = a.clamp_min(0)
        y, t = a, 1.0
        for _ in range(self.n_iter):
            # gradient of the squared error, (y D - r) D^T: cheaper than a features x features Gram
            new = (y - step * ((y @ d - r) @ d.T) - step * self.l1).clamp_min(0)
            if self.accelerated:
                t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
                y = new + ((t - 1) / t_next) * (new - a)
                t = t_next
            else:
                y = new
            a = new
        if self.k is not None:
            a = topk_project(a, resolve_k(module, self.k))
        if self.debias:
            n_max = int((a > 0).sum(1).max()) if a.numel() else 0
            if n_max:
                top = a.topk(n_max, dim=1)
                support = torch.where(top.values > 0, top.indices, -1)
                a = refit_on_support(d, r, support)
        return a.to(x.dtype)

    def params(self) -> dict[str, Any]:
        out = {"inference": self.name, "l1": self.l1, "n_iter": self.n_iter}
        out["debias"] = self.debias
        out["warm_start"] = self.warm_start
        if self.k is not None:
            out["k"] = self.k
        return out


@register
class FISTA(ISTA):
    """ISTA with Nesterov momentum (Beck & Teboulle 2009); same problem, faster convergence.

    Parameters are those of :class:`~scsae.models._inference.ISTA`.
    """

    name = "fista"
    accelerated = True
