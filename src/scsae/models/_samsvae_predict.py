"""Counterfactual cells of a trained SAMS-VAE: the sampling behind predict and the ATE."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from scipy import sparse
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.distributions import NegativeBinomial

from .._utils._perturbation import log_normalize
from ._samsvae_module import SAMSVAEModule

__all__ = ["PREDICT_BATCH", "log_normalize", "sample_counterfactuals", "seeded", "tensors_for"]

PREDICT_BATCH = 1024


@contextmanager
def seeded(random_state: int) -> Iterator[None]:
    """Seed torch inside the block only; the caller's global RNG state is restored after it."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(random_state)
        yield


def tensors_for(manager: AnnDataManager, indices: np.ndarray) -> dict[str, torch.Tensor]:
    """Counts (dense) and batch of the cells ``indices`` of a registered AnnData."""
    tensors: dict[str, torch.Tensor] = {}
    x = manager.get_from_registry(REGISTRY_KEYS.X_KEY)[indices]
    x = x.toarray() if sparse.issparse(x) else np.asarray(x)
    tensors[REGISTRY_KEYS.X_KEY] = torch.as_tensor(x, dtype=torch.float32)
    if REGISTRY_KEYS.BATCH_KEY in manager.data_registry:
        b = np.asarray(manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY))[indices]
        tensors[REGISTRY_KEYS.BATCH_KEY] = torch.as_tensor(b.reshape(-1, 1))
    return tensors


@torch.inference_mode()
def sample_counterfactuals(
    module: SAMSVAEModule,
    manager: AnnDataManager,
    source: np.ndarray,
    dosage: np.ndarray,
    *,
    from_controls: bool,
    device: torch.device | str,
) -> tuple[list[sparse.csr_matrix], list[np.ndarray], torch.Tensor]:
    """Counts of the cells ``source`` under every dosage row (the maths of ``predict``).

    Each source cell keeps its basal state (encoded with no perturbation, or drawn from
    the prior with ``from_controls=False``), library size and batch; each dosage row adds
    one posterior draw of the shifts per cell. Returns per dosage row the sampled counts
    and the noise-free expression normalised to 10,000, and the library sizes.
    """
    z_b, library, batch = [], [], []
    for start in range(0, len(source), PREDICT_BATCH):
        chunk = source[start : start + PREDICT_BATCH]
        tensors = {k: v.to(device) for k, v in tensors_for(manager, chunk).items()}
        x = tensors[REGISTRY_KEYS.X_KEY]
        b = module._batch_onehot(tensors.get(REGISTRY_KEYS.BATCH_KEY), len(chunk))
        if from_controls:
            zero = torch.zeros(len(chunk), module.n_perturbations, device=device)
            offset = (
                torch.zeros(len(chunk), module.n_latent, device=device)
                if module.reads_offset
                else None
            )
            mean, scale = module.encode(x, offset=offset, dosage=zero, batch=b)
            z_b.append(module.sample_basal(mean, scale))
        else:
            z_b.append(torch.randn(len(chunk), module.n_latent, device=device))
        library.append(x.sum(-1, keepdim=True))
        batch.append(b)
    z_b = torch.cat(z_b)
    library = torch.cat(library)
    batch = torch.cat(batch) if batch[0] is not None else None
    theta = torch.exp(module.log_theta)
    counts, normalized = [], []
    for row in dosage:
        d = torch.as_tensor(row, dtype=torch.float32, device=device)
        z, offset = z_b, None
        if module.has_globals:
            shift = module.sample_globals(len(source))["shift"]  # one posterior draw per cell
            offset = torch.einsum("t,ntd->nd", d, shift)
            z = z_b + offset
        px = module.decode(z, dosage=d.expand(len(source), -1), batch=batch, offset=offset)
        sample = NegativeBinomial(mu=library * px, theta=theta).sample()
        counts.append(sparse.csr_matrix(sample.cpu().numpy().astype(np.float32)))
        normalized.append((px * 1e4).cpu().numpy().astype(np.float32))
    return counts, normalized, library
