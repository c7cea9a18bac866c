"""The sparse autoencoder's maths: encode, decode, losses, decoder constraints.

Knows nothing of AnnData; :class:`~scsae.models.SparseAutoencoder` owns the data.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from ._architectures import get_architecture
from ._sae_config import SAEConfig
from ._scale._sparse_code import sparse_code

ENCODER_INITS = ("auto", "transpose", "least_squares")
KERNELS = ("auto", "dense", "sparse")
#: dictionary size from which ``kernel="auto"`` trains with the sparse kernel (the
#: CPU crossover of the two kernels' step times was near 1,000 features)
SPARSE_KERNEL_MIN_FEATURES = 1024
#: cells of each batch on which the AuxK loss is computed (its cost grows with the dead count)
AUXK_CELLS = 1024


class SAEOutput(NamedTuple):
    """What one forward pass returns.

    The dense kernel fills ``activations`` (cells x features, mostly zeros).
    The sparse kernel leaves it `None` and fills ``indices`` (flat feature
    ids), ``values`` (their activations) and ``offsets`` (where each cell's
    entries start), the layout of :func:`torch.nn.functional.embedding_bag`.
    """

    activations: Tensor | None
    reconstruction: Tensor
    fvu: Tensor
    aux_loss: Tensor
    sparsity_loss: Tensor
    indices: Tensor | None = None
    values: Tensor | None = None
    offsets: Tensor | None = None


class SAEModule(nn.Module):
    """Sparse autoencoder ``x -> f = act(W_enc (x - b_dec) + b_enc) -> W_dec^T f + b_dec``.

    Works in a normalised space: inputs are centred on a stored mean and
    divided by a stored scale that makes their mean squared norm one, so the
    same hyper-parameters serve embeddings of any scale.
    """

    def __init__(self, config: SAEConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        d, n = config.n_input, config.n_features
        # decoder rows: random unit directions; encoder starts as its transpose
        w_dec = torch.randn(n, d, generator=generator)
        w_dec /= w_dec.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(w_dec)
        self.W_enc = nn.Parameter(w_dec.clone())
        self.b_enc = nn.Parameter(torch.zeros(n))
        self.b_dec = nn.Parameter(torch.zeros(d))
        self.activation = get_architecture(config.architecture)(config)
        # (field, allowed values, the value that only selection architectures support)
        for field, choices, selection_only in (
            ("kernel", KERNELS, "sparse"),
            ("encoder_init", ENCODER_INITS, "least_squares"),
        ):
            value = getattr(config, field)
            if value not in choices:
                msg = f"{field}={value!r} is not one of {choices}."
                raise ValueError(msg)
            if value == selection_only and not self.activation.supports_sparse:
                msg = f"{field}={value!r} needs a selection architecture (topk, batchtopk), not {config.architecture!r}."
                raise ValueError(msg)
        # kernel used in training: a size rule, so that reruns are bit-identical
        if config.kernel == "sparse" and self.activation.prefix_sizes:
            msg = f"kernel='sparse' cannot train {config.architecture!r}: its prefix losses read every activation."
            raise ValueError(msg)
        if not self.activation.supports_sparse or self.activation.prefix_sizes:
            self.kernel = "dense"
        elif config.kernel == "auto":
            self.kernel = "sparse" if n >= SPARSE_KERNEL_MIN_FEATURES else "dense"
        else:
            self.kernel = config.kernel
        if config.encoder_init == "auto":
            self.encoder_init = "least_squares" if self.activation.supports_sparse else "transpose"
        else:
            self.encoder_init = config.encoder_init
        #: factor the encoder was scaled by at initialisation (the decoder's lr is divided by it)
        self.encoder_scale = 1.0
        self.register_buffer("input_mean", torch.zeros(d))
        self.register_buffer("input_scale", torch.tensor(1.0))
        self.register_buffer("cells_since_fired", torch.zeros(n, dtype=torch.long))

    # --- normalisation -------------------------------------------------------
    def normalize(self, x: Tensor) -> Tensor:
        """Raw embedding -> model space."""
        return (x - self.input_mean) / self.input_scale

    def denormalize(self, x: Tensor) -> Tensor:
        """Model space -> raw embedding."""
        return x * self.input_scale + self.input_mean

    # --- forward ---------------------------------------------------------------
    def pre_activations(self, x: Tensor) -> Tensor:
        """Encoder pre-activations of normalised inputs."""
        return (x - self.b_dec) @ self.W_enc.T + self.b_enc

    def decoder_norms(self) -> Tensor:
        """Row norms of the decoder."""
        return self.W_dec.norm(dim=1)

    def encode(self, x: Tensor) -> Tensor:
        """Sparse activations of normalised inputs (dense tensor, mostly zeros)."""
        acts, _ = self.activation(self.pre_activations(x), self.decoder_norms())
        return acts

    def decode(self, acts: Tensor) -> Tensor:
        """Normalised reconstruction from activations."""
        return acts @ self.W_dec + self.b_dec

    def forward(self, x: Tensor) -> SAEOutput:
        """Encode and decode normalised inputs; return activations and losses.

        In training mode with ``kernel == "sparse"`` the sparse kernel runs
        (same losses and gradients, see :class:`SAEConfig`); otherwise the dense one.
        """
        if self.training and self.kernel == "sparse":
            return self._forward_sparse(x)
        pre = self.pre_activations(x)
        acts, sparsity_loss = self.activation(pre, self.decoder_norms())
        recon = self.decode(acts)
        residual = x - recon
        total_variance = (x - x.mean(0)).pow(2).sum().clamp_min(1e-12)
        fvu = residual.pow(2).sum() / total_variance
        if self.activation.prefix_sizes:
            sparsity_loss = sparsity_loss + self._prefix_fvu(acts, x, total_variance)
        aux_loss = (
            self._auxk_loss(pre, x - self.b_dec, residual) if self.training else pre.new_zeros(())
        )
        return SAEOutput(acts, recon, fvu, aux_loss, sparsity_loss)

    def _prefix_fvu(self, acts: Tensor, x: Tensor, total_variance: Tensor) -> Tensor:
        """Sum of the FVUs of reconstructions from each proper prefix of the features."""
        recon = self.b_dec.expand_as(x)
        total = x.new_zeros(())
        start = 0
        for size in self.activation.prefix_sizes[:-1]:
            recon = recon + acts[:, start:size] @ self.W_dec[start:size]
            total = total + (x - recon).pow(2).sum() / total_variance
            start = size
        return total

    # --- sparse kernel ----------------------------------------------------------
    def _forward_sparse(self, x: Tensor) -> SAEOutput:
        centred = x - self.b_dec
        with torch.no_grad():
            plain = centred.detach()
            pre = torch.addmm(self.b_enc, plain, self.W_enc.T)
            indices, rows = self.activation.select(pre)
            selected = pre.gather(1, indices) if rows is None else pre[rows, indices]
        # gradients reach only the selected encoder and decoder rows (see sparse_code)
        recon, values, indices, offsets = sparse_code(
            plain, self.b_dec, self.W_enc, self.b_enc, self.W_dec, selected, indices, rows
        )
        recon = recon + self.b_dec
        residual = x - recon
        total_variance = (x - x.mean(0)).pow(2).sum().clamp_min(1e-12)
        fvu = residual.pow(2).sum() / total_variance
        aux_loss = self._auxk_loss(pre, centred, residual)
        zero = x.new_zeros(())
        return SAEOutput(None, recon, fvu, aux_loss, zero, indices, values, offsets)

    def _auxk_loss(self, pre: Tensor, centred: Tensor, residual: Tensor) -> Tensor:
        """Let the top dead features model what the live ones missed (Gao et al. 2024).

        One path for both kernels: dead features are chosen without gradient
        among the first :data:`AUXK_CELLS` cells of the batch (a sub-batch, so
        that a step with many dead features costs little more than one
        without) and decoded by :func:`sparse_code`, so only their rows train.
        """
        dead = self.dead_mask()
        n_dead = int(dead.sum())
        if n_dead == 0:
            return pre.new_zeros(())
        aux_k = self.config.aux_k or max(1, self.config.n_input // 2)
        # scale down while fewer features are dead than aux_k: the residual is shared by few
        weight = min(n_dead / aux_k, 1.0)
        n = min(pre.shape[0], AUXK_CELLS)
        with torch.no_grad():
            top_pre, indices = self._top_dead(pre[:n].detach(), dead, min(aux_k, n_dead))
        residual_hat = sparse_code(
            centred[:n].detach(),
            self.b_dec,
            self.W_enc,
            self.b_enc,
            self.W_dec,
            top_pre,
            indices,
        )[0]
        target = residual[:n].detach()
        denom = (target - target.mean(0)).pow(2).sum().clamp_min(1e-12)
        return weight * (residual_hat - target).pow(2).sum() / denom

    @staticmethod
    def _top_dead(pre: Tensor, dead: Tensor, aux_k: int) -> tuple[Tensor, Tensor]:
        """Pre-activations and feature ids of each cell's ``aux_k`` largest dead features.

        Selects among the dead columns only: usually few features are dead, and a
        top-k over all of them would cost as much as the forward pass.
        """
        dead_ids = dead.nonzero().squeeze(1)
        top = pre[:, dead_ids].topk(aux_k, dim=-1, sorted=False)
        return top.values, dead_ids[top.indices]

    # --- dead features --------------------------------------------------------
    def dead_mask(self) -> Tensor:
        """Features that have not fired in ``dead_after_cells`` training cells."""
        return self.cells_since_fired >= self.config.dead_after_cells

    @torch.no_grad()
    def update_firing(self, acts: Tensor) -> None:
        """Count training cells since each feature last fired."""
        self.record_firing((acts > 0).any(0), acts.shape[0])

    @torch.no_grad()
    def record_firing(self, fired: Tensor, n_cells: int) -> None:
        """Advance the dead counters by ``n_cells``; reset those of ``fired`` features."""
        self.cells_since_fired += n_cells
        self.cells_since_fired[fired] = 0

    @torch.no_grad()
    def firing(self, out: SAEOutput) -> tuple[Tensor, Tensor]:
        """``(fired, l0)`` of a forward pass: features active in any cell, active entries."""
        if out.activations is not None:
            active = out.activations > 0
            return active.any(0), active.sum()
        active = out.values > 0
        fired = torch.zeros(self.config.n_features, dtype=torch.bool, device=active.device)
        fired[out.indices[active]] = True
        return fired, active.sum()

    # --- decoder constraints --------------------------------------------------
    @torch.no_grad()
    def set_decoder_norm_to_unit(self) -> None:
        """Rescale decoder rows to unit norm."""
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder(self) -> None:
        """Drop the part of the decoder gradient that would only change row norms."""
        if self.W_dec.grad is None:
            return
        parallel = (self.W_dec.grad * self.W_dec).sum(-1, keepdim=True)
        self.W_dec.grad -= parallel * self.W_dec

    @torch.no_grad()
    def fold_decoder_norms(self) -> None:
        """Make decoder rows unit norm without changing any reconstruction.

        For architectures trained with free decoder norms (ReLU): row norms move
        into the encoder, which is exact for positively homogeneous activations.
        """
        norms = self.decoder_norms().clamp_min(1e-8)
        self.W_enc *= norms[:, None]
        self.b_enc *= norms
        self.W_dec /= norms[:, None]

    @torch.no_grad()
    def initialize_encoder_scale(self, x: Tensor, *, block: int = 512) -> None:
        """Scale the encoder so first reconstructions of ``x`` have the best size.

        With many more features than dimensions the ``k`` decoder rows a cell
        selects overlap, so a plain transposed-decoder encoder over-shoots the
        input (several-fold at 16x width) and early training spends its steps
        shrinking the encoder, scrambling the directions it started from.
        Selection architectures pick the same features at any encoder scale,
        so one scalar, the least-squares fit of ``x - b_dec`` by those
        reconstructions, starts training at the best reconstruction of that
        support. Only when ``self.encoder_init`` is ``"least_squares"``; other
        architectures cannot use it: their scale sets which features fire.
        The factor multiplies ``self.encoder_scale``.
        """
        if self.encoder_init != "least_squares":
            return
        was_training = self.training
        self.eval()  # per-cell top-k; no running state is touched
        cross = power = 0.0
        for start in range(0, x.shape[0], block):
            rows = x[start : start + block]
            recon = self.encode(rows) @ self.W_dec
            cross += float((recon * (rows - self.b_dec)).sum())
            power += float(recon.pow(2).sum())
        self.train(was_training)
        if power > 0 and cross > 0:
            factor = cross / power
            self.W_enc *= factor
            self.encoder_scale *= factor

    @torch.no_grad()
    def initialize_decoder_bias(self, x: Tensor, *, n_iter: int = 50) -> None:
        """Start ``b_dec`` at the geometric median of normalised inputs (Weiszfeld)."""
        median = x.mean(0)
        for _ in range(n_iter):
            weights = 1.0 / (x - median).norm(dim=1).clamp_min(1e-6)
            new = (weights[:, None] * x).sum(0) / weights.sum()
            if (new - median).norm() < 1e-6:
                median = new
                break
            median = new
        self.b_dec.copy_(median)
