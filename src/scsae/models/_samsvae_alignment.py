"""Re-expression of the SAMS-VAE latent basis: whitening and the sparsest rotation.

Used by :meth:`scsae.models.SAMSVAE.train` with ``align_rounds > 0`` (not part of the
paper's procedure; see the docs).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from scvi import REGISTRY_KEYS

from ._samsvae_module import DOSAGE_KEY, SAMSVAEModule


def varimax(loadings: np.ndarray, *, n_iter: int = 500, tol: float = 1e-8) -> np.ndarray:
    """Orthogonal rotation ``R`` maximising the varimax criterion of ``loadings @ R``.

    Kaiser's criterion (the variance of the squared entries of every column),
    optimised by the usual SVD iteration; rows are the perturbations.
    """
    x = np.asarray(loadings, dtype=np.float64)
    n, k = x.shape
    rotation = np.eye(k)
    objective = 0.0
    for _ in range(n_iter):
        y = x @ rotation
        u, s, vt = np.linalg.svd(x.T @ (y**3 - y @ np.diag((y**2).sum(0)) / n))
        rotation = u @ vt
        if s.sum() < objective * (1 + tol):
            break
        objective = s.sum()
    return rotation


def sparse_rotation(
    loadings: np.ndarray,
    *,
    n_starts: int = 20,
    n_iter: int = 500,
    eps: float = 1e-2,
    random_state: int = 0,
) -> np.ndarray:
    """Orthogonal ``R`` minimising the L1 norm of ``loadings @ R`` (sparsest rows).

    The L1 norm, smoothed as ``sqrt(x^2 + eps^2)``, is the usual convex surrogate of
    the number of non-zero entries, which is what a sparse Bernoulli mask prior
    charges for (Jennrich's component-loss rotation with the absolute value). It is
    minimised by gradient projection on the orthogonal group (Jennrich 2001) from the
    identity, varimax and ``n_starts`` random rotations; the best end point wins.

    Parameters
    ----------
    loadings
        Rows to sparsify (perturbations x latent dims).
    n_starts
        Random orthogonal starting points besides the identity and varimax.
    n_iter
        Gradient-projection steps per start.
    eps
        Smoothing of the absolute value, relative to the largest absolute loading.
    random_state
        Seed of the random starts.
    """
    x = np.asarray(loadings, dtype=np.float64)
    k = x.shape[1]
    x = x / max(np.abs(x).max(), 1e-12)  # scale-free: eps is relative to the largest loading
    rng = np.random.default_rng(random_state)

    def loss(r: np.ndarray) -> float:
        return float(np.sqrt((x @ r) ** 2 + eps**2).sum())

    starts = [np.eye(k), varimax(x)]
    starts += [np.linalg.qr(rng.standard_normal((k, k)))[0] for _ in range(n_starts)]
    best, best_loss = np.eye(k), loss(np.eye(k))
    for rotation in starts:
        value, step = loss(rotation), 1.0
        for _ in range(n_iter):
            y = x @ rotation
            grad = x.T @ (y / np.sqrt(y**2 + eps**2))
            m = rotation.T @ grad
            proj = grad - rotation @ (m + m.T) / 2  # gradient on the orthogonal group
            if np.linalg.norm(proj) < 1e-8:
                break
            while True:  # backtracking; the SVD maps the step back onto the group
                u, _, vt = np.linalg.svd(rotation - step * proj)
                candidate = u @ vt
                new = loss(candidate)
                if new < value - 1e-4 * step * np.linalg.norm(proj) ** 2 or step < 1e-10:
                    break
                step /= 2
            done = value - new < 1e-10
            if new < value:
                rotation, value = candidate, new
            if done:
                break
            step *= 2
        if value < best_loss:
            best, best_loss = rotation, value
    return best


@torch.no_grad()
def alignment_map(
    module: SAMSVAEModule, batches: Iterable[dict[str, torch.Tensor]], n_cells: int
) -> torch.Tensor:
    """Linear map ``M`` (latent x latent) of the alignment step, ``z' = z @ M``.

    With a full-covariance ``q(z_b)`` the latent is first whitened: ``C`` is the
    aggregate second moment of ``q(z_b)`` over the training cells (``batches``, ``n_cells``
    in all) and ``C^{-1/2}`` is the linear reparameterisation that minimises the basal KL
    term at unchanged likelihood. The whitened expected shifts are then rotated to the
    sparsest basis (:func:`sparse_rotation`), the only direction in which the mask prior
    still distinguishes bases. A diagonal ``q(z_b)`` is only rotated.
    """
    was_training = module.training
    module.eval()  # no dropout while measuring
    shift = module.expected_shift().detach()
    whiten = torch.eye(module.n_latent, device=shift.device)
    if module.basal_covariance == "full":
        moment = torch.zeros(module.n_latent, module.n_latent, device=shift.device)
        for tensors in batches:
            x, dosage = tensors[REGISTRY_KEYS.X_KEY], tensors[DOSAGE_KEY]
            batch = module._batch_onehot(tensors.get(REGISTRY_KEYS.BATCH_KEY), x.shape[0])
            mean, tril = module.encode(x, offset=dosage @ shift, dosage=dosage, batch=batch)
            moment += mean.T @ mean + module.basal_covariance_matrix(tril).sum(0)
        moment /= n_cells
        values, vectors = torch.linalg.eigh(moment.double())
        whiten = (vectors @ torch.diag(values.clamp(min=1e-8) ** -0.5) @ vectors.T).float()
    module.train(was_training)
    rotation = sparse_rotation((shift @ whiten).cpu().double().numpy())
    return whiten @ torch.as_tensor(rotation, dtype=torch.float32, device=shift.device)
