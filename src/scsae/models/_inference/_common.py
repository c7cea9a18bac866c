"""Pieces shared by the sparse-coding strategies (all in the SAE's normalised space).

Every strategy solves, per cell, ``min_a ||r - a D||^2 (+ penalty)`` with
``a >= 0``, where ``D = module.W_dec`` (unit-norm rows, features x dims) and
``r = x - module.b_dec``, so that ``module.decode(a)`` reconstructs ``x``.
Codes are non-negative like the SAE's, so "active" means ``> 0`` everywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .._sae_module import SAEModule


def dictionary_and_target(module: SAEModule, x: Tensor) -> tuple[Tensor, Tensor]:
    """Detached dictionary ``D`` and residual target ``r = x - b_dec`` in the module's dtype."""
    d = module.W_dec.detach()
    r = x.to(device=d.device, dtype=d.dtype) - module.b_dec.detach()
    return d, r


def lipschitz(d: Tensor) -> Tensor:
    """Largest eigenvalue of ``D D^T`` (the step-size bound of gradient steps on codes)."""
    return torch.linalg.matrix_norm(d, ord=2).square().clamp_min(1e-12)


def topk_project(a: Tensor, k: int) -> Tensor:
    """Keep the ``k`` largest non-negative entries per row, zero the rest."""
    a = a.clamp_min(0)
    if k >= a.shape[-1]:
        return a
    top = a.topk(k, dim=-1)
    return torch.zeros_like(a).scatter_(-1, top.indices, top.values)


def refit_on_support(
    d: Tensor, r: Tensor, support: Tensor, *, ridge: float = 1e-6, n_rounds: int = 3
) -> Tensor:
    """Non-negative least squares of ``r`` on each row's support (dense ``a``).

    Solves the normal equations on the ``k`` selected atoms per cell in one
    batched solve, then drops atoms whose coefficient is negative and solves
    again (a few rounds of an active-set method).

    Parameters
    ----------
    d
        Dictionary, features x dims.
    r
        Targets, cells x dims.
    support
        Indices of the atoms per cell, cells x k (``-1`` for padding).
    ridge
        Diagonal added to each Gram matrix for numerical safety.
    n_rounds
        Times negative coefficients are removed and the rest refitted.
    """
    n, k = support.shape
    out = torch.zeros(n, d.shape[0], dtype=r.dtype, device=r.device)
    if k == 0:
        return out
    keep = support >= 0
    idx = support.clamp_min(0)
    atoms = d[idx]  # cells x k x dims
    gram = atoms @ atoms.transpose(1, 2)
    rhs = (atoms @ r.unsqueeze(-1)).squeeze(-1)
    eye = torch.eye(k, dtype=r.dtype, device=r.device)
    coef = rhs.new_zeros(n, k)
    for _ in range(n_rounds):
        mask = keep.to(r.dtype)
        g = (
            gram * mask.unsqueeze(1) * mask.unsqueeze(2)
            + eye * (1 - mask).unsqueeze(1)
            + ridge * eye
        )
        coef = torch.linalg.solve(g, (rhs * mask).unsqueeze(-1)).squeeze(-1) * mask
        negative = coef < 0
        if not bool(negative.any()):
            break
        keep = keep & ~negative
    coef = coef.clamp_min(0)
    # scatter_add: padded slots point at atom 0 with a zero coefficient
    return out.scatter_add_(1, idx, coef * keep.to(r.dtype))


def check_positive(name: str, value: float) -> None:
    """ValueError unless ``value > 0``."""
    if not value > 0:
        msg = f"{name}={value} must be positive."
        raise ValueError(msg)


def resolve_k(module: SAEModule, k: int | None) -> int:
    """The given ``k`` or the SAE's own, checked against the dictionary size."""
    k = module.config.k if k is None else int(k)
    n = module.config.n_features
    if not 1 <= k <= n:
        msg = f"k={k} must be between 1 and the number of features ({n})."
        raise ValueError(msg)
    return k
