"""Inference-time optimisation: gradient steps on the codes, from the encoder's codes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import torch

from ._base import Inference, register
from ._common import check_positive, dictionary_and_target, lipschitz, resolve_k, topk_project

if TYPE_CHECKING:
    from torch import Tensor

    from .._sae_module import SAEModule


@register
class ITO(Inference):
    """Optimise each cell's code by projected gradient steps on its reconstruction error.

    Starts from the encoder's codes and minimises ``||r - a D||^2`` over
    ``a >= 0``. With ``support="fixed"`` only the features the encoder chose
    move, by accelerated (Nesterov) projected gradient steps of size ``1 / L``,
    ``L = ||D||_2^2`` (same L0 as the encoder; fixes magnitudes, e.g.
    shrinkage). With ``support="free"`` every gradient step is projected onto
    the ``k`` largest non-negative entries, with the step size of normalised
    iterative hard thresholding (Blumensath & Davies 2010), so features can
    be swapped in and out.

    Parameters
    ----------
    support
        ``"fixed"`` (the encoder's active set) or ``"free"`` (top-``k`` projection).
    n_steps
        Gradient steps.
    k
        Active features per cell for ``support="free"``; `None` uses the SAE's ``k``.
    """

    name = "ito"

    def __init__(
        self,
        *,
        support: Literal["fixed", "free"] = "fixed",
        n_steps: int = 100,
        k: int | None = None,
    ) -> None:
        if support not in ("fixed", "free"):
            msg = f"support={support!r}; use 'fixed' or 'free'."
            raise ValueError(msg)
        check_positive("n_steps", n_steps)
        self.support = support
        self.n_steps = int(n_steps)
        self.k = None if k is None else int(k)

    @torch.no_grad()
    def encode(self, module: SAEModule, x: Tensor) -> Tensor:
        d, r = dictionary_and_target(module, x)
        step = 1.0 / lipschitz(d)
        a = module.encode(x).detach().to(r.dtype).clamp_min(0)
        if self.support == "fixed":
            mask = (a > 0).to(r.dtype)

            def project(v: Tensor) -> Tensor:
                return v.clamp_min(0) * mask
        else:
            k = resolve_k(module, self.k)

            def project(v: Tensor) -> Tensor:
                return topk_project(v, k)

        a = project(a)
        if self.support == "fixed":
            # accelerated projected gradient on the encoder's support
            y, t = a, 1.0
            for _ in range(self.n_steps):
                new = project(y - step * ((y @ d - r) @ d.T))
                t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
                y = new + ((t - 1) / t_next) * (new - a)
                a, t = new, t_next
        else:
            # normalised iterative hard thresholding (Blumensath & Davies 2010): the step
            # per cell is the exact line search along the gradient restricted to the support
            for _ in range(self.n_steps):
                grad = (a @ d - r) @ d.T
                on_support = torch.where(a > 0, grad, torch.zeros_like(grad))
                num = on_support.pow(2).sum(1, keepdim=True)
                den = (on_support @ d).pow(2).sum(1, keepdim=True)
                mu = torch.where(den > 0, num / den.clamp_min(1e-12), step)
                a = project(a - mu * grad)
        return a.to(x.dtype)

    def params(self) -> dict[str, Any]:
        out = {"inference": self.name, "support": self.support, "n_steps": self.n_steps}
        if self.k is not None:
            out["k"] = self.k
        return out
