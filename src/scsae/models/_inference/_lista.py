"""LISTA: a learned, unrolled ISTA encoder trained against the frozen dictionary."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from ..._utils._embedding import Embedding
from ._base import Inference, register
from ._common import check_positive, dictionary_and_target, lipschitz, resolve_k, topk_project

if TYPE_CHECKING:
    from .._sae_module import SAEModule


class _Unrolled(nn.Module):
    """``a_{t+1} = relu(a_t + (r - a_t D) W_t - theta_t)``, ``t = 1..n_layers``."""

    def __init__(self, d: Tensor, n_layers: int, threshold: float) -> None:
        super().__init__()
        step = 1.0 / float(lipschitz(d))
        w = (step * d.T).unsqueeze(0).repeat(n_layers, 1, 1)  # layers x dims x features
        self.W = nn.Parameter(w)
        self.theta = nn.Parameter(
            torch.full((n_layers, d.shape[0]), threshold * step, dtype=d.dtype, device=d.device)
        )

    def forward(self, a: Tensor, r: Tensor, d: Tensor, k: int | None) -> Tensor:
        for w, theta in zip(self.W, self.theta, strict=True):
            a = torch.relu(a + (r - a @ d) @ w - theta)
        return topk_project(a, k) if k is not None else a


@register
class LISTA(Inference):
    """Learned ISTA (Gregor & LeCun 2010) over the SAE's frozen dictionary.

    Unrolls ``n_layers`` ISTA steps from the encoder's codes, each with its own
    learned step matrix (initialised at ``D^T / L``) and per-feature
    thresholds, and trains them on the cells to minimise the reconstruction
    error through the fixed decoder (plus ``l1 * sum(a)`` when ``k`` is `None`).
    With ``k`` the last layer keeps the ``k`` largest codes (exact L0).
    :meth:`train` must see data first (``needs_fit``); the model does that in
    :meth:`~scsae.models.SparseAutoencoder.get_inference`. Training runs through
    the package's one training path (:func:`scsae.models._training.run_training`).

    Parameters
    ----------
    n_layers
        Unrolled steps.
    k
        Codes kept per cell by the last layer; `None` uses the SAE's ``k`` for
        TopK architectures; ``0`` keeps all (sparsity from ``l1`` alone).
    l1
        L1 penalty during training and the thresholds' starting value.
    n_epochs
        Passes over the (sub-sampled) training cells.
    max_cells
        Cells kept in memory for training (the first batches seen).
    lr
        Adam learning rate.
    batch_size
        Cells per optimiser step.
    random_state
        Seed of the shuffling.
    """

    name = "lista"
    needs_fit = True

    def __init__(
        self,
        *,
        n_layers: int = 5,
        k: int | None = None,
        l1: float = 0.02,
        n_epochs: int = 10,
        max_cells: int = 50_000,
        lr: float = 1e-3,
        batch_size: int = 512,
        random_state: int = 0,
    ) -> None:
        for name, value in (
            ("n_layers", n_layers),
            ("n_epochs", n_epochs),
            ("max_cells", max_cells),
            ("lr", lr),
            ("batch_size", batch_size),
        ):
            check_positive(name, value)
        if l1 < 0:
            msg = f"l1={l1} must be non-negative."
            raise ValueError(msg)
        self.n_layers = int(n_layers)
        self.k = None if k is None else int(k)
        self.l1 = float(l1)
        self.n_epochs = int(n_epochs)
        self.max_cells = int(max_cells)
        self.lr = float(lr)
        self.batch_size = int(batch_size)
        self.random_state = int(random_state)
        self.net_: _Unrolled | None = None
        self.history_: list[float] = []

    def _k(self, module: SAEModule) -> int | None:
        if self.k == 0:
            return None
        if self.k is None:
            return module.config.k if module.activation.uses_k else None
        return resolve_k(module, self.k)

    def train(self, module: SAEModule, batches: Iterable[Tensor]) -> None:
        """Train the unrolled layers on normalised cells, dictionary and encoder frozen.

        Keeps up to ``max_cells`` cells from ``batches`` and trains on them
        through the package's one training path (a Lightning plan run by
        scvi-tools' TrainRunner, on the device of ``module``).
        """
        from .._scale import ShuffledBatches
        from .._training import LossPlan, PlanOwner, batch_data, run_training

        kept, n = [], 0
        for b in batches:
            kept.append(b.detach())
            n += b.shape[0]
            if n >= self.max_cells:
                break
        if not kept:
            msg = "LISTA.train got no cells."
            raise ValueError(msg)
        x_all = torch.cat(kept)[: self.max_cells]
        d, _ = dictionary_and_target(module, x_all[:1])
        k = self._k(module)
        net = _Unrolled(d, self.n_layers, self.l1)

        def loss(x: Tensor) -> Tensor:
            with torch.no_grad():
                _, r = dictionary_and_target(module, x)
                a0 = module.encode(x).detach().to(r.dtype).clamp_min(0)
            a = net(a0, r, d, k)
            value = (r - a @ d).pow(2).sum(1).mean() / r.pow(2).sum(1).mean().clamp_min(1e-12)
            if k is None and self.l1 > 0:
                value = value + self.l1 * a.sum(1).mean()
            return value

        n_total = x_all.shape[0]
        cells = Embedding(x_all.cpu().numpy(), "LISTA training cells")
        rows = np.arange(n_total)
        batches = ShuffledBatches(
            cells,
            rows,
            min(self.batch_size, n_total),
            shuffle=True,
            drop_last=True,
            seed=self.random_state,
        )
        plan = LossPlan(net, loss, lr=self.lr)
        device = d.device
        with torch.enable_grad():
            run_training(
                plan,
                batch_data(batches, train_idx=rows),
                owner=PlanOwner(net),
                max_epochs=self.n_epochs,
                accelerator="gpu" if device.type == "cuda" else "cpu",
                devices=[device.index or 0] if device.type == "cuda" else 1,
            )
        net.to(device)
        self.history_ = list(plan.history)
        self.net_ = net.requires_grad_(requires_grad=False).eval()

    @torch.no_grad()
    def encode(self, module: SAEModule, x: Tensor) -> Tensor:
        if self.net_ is None:
            msg = "LISTA is not fitted; get it from model.get_inference('lista') or call train()."
            raise RuntimeError(msg)
        d, r = dictionary_and_target(module, x)
        net = self.net_.to(device=d.device, dtype=d.dtype)
        a0 = module.encode(x).detach().to(r.dtype).clamp_min(0)
        return net(a0, r, d, self._k(module)).to(x.dtype)

    def params(self) -> dict[str, Any]:
        out = {
            "inference": self.name,
            "n_layers": self.n_layers,
            "l1": self.l1,
            "n_epochs": self.n_epochs,
            "lr": self.lr,
        }
        if self.k is not None:
            out["k"] = self.k
        if self.history_:
            out["final_loss"] = float(self.history_[-1])
        return out
