"""Torch module of SAMS-VAE and its baselines (the maths; no AnnData).

Generative model (Bereket & Karaletsos 2023, written from the paper):

* per cell ``i``: basal latent ``z_b ~ N(0, I)``;
* per perturbation ``t`` (global): embedding ``e_t ~ N(0, I)`` and mask
  ``m_t ~ Bernoulli(mask_prior)`` over the latent dimensions;
* ``z = z_b + sum_t d_it (e_t * m_t)`` with ``d_i`` the dosage row;
* ``x ~ NB(library * softmax(decoder(z)), theta)`` with per-gene ``theta``.

Variational family: ``q(z_b | x, offset)`` amortised on log-normalised counts
(optionally given the sampled perturbation offset), relaxed-Bernoulli masks with
a straight-through estimator, Gaussian embeddings, either mean-field
``q(m_t) q(e_t)`` or correlated ``q(m_t) q(e_t | m_t)`` (a small network).
The ELBO is averaged over particles; every perturbation's global KL is shared
among the training cells that carry it (weight ``1 / n_t`` per cell).

Variants in the same framework: ``"samsvae"``; ``"additive"`` (no masks,
``z = z_b + sum_t d_t e_t``, a CPA-VAE-like baseline) and ``"cvae"`` (a
conditional VAE whose encoder and decoder see the dosage vector).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from torch import nn
from torch.distributions import Bernoulli, Independent, MultivariateNormal, Normal, kl_divergence

DOSAGE_KEY = "dosage"
VARIANTS = ("samsvae", "additive", "cvae")
GUIDES = ("mean_field", "correlated")
COVARIANCES = ("full", "diagonal")
DECODERS = ("mlp", "linear", "linear_shift")
OFFSET_GUIDES = ("tilt", "subtract", "none")
Variant = Literal["samsvae", "additive", "cvae"]
Guide = Literal["mean_field", "correlated"]
Covariance = Literal["full", "diagonal"]
Decoder = Literal["mlp", "linear", "linear_shift"]
OffsetGuide = Literal["tilt", "subtract", "none"]


def _mlp(n_in: int, n_hidden: int, n_layers: int, dropout_rate: float) -> nn.Sequential:
    """``n_layers`` x (Linear, LayerNorm, ReLU, Dropout); the first layer maps from ``n_in``."""
    layers: list[nn.Module] = []
    for i in range(n_layers):
        layers += [
            nn.Linear(n_in if i == 0 else n_hidden, n_hidden),
            nn.LayerNorm(n_hidden),
            nn.ReLU(),
        ]
        if dropout_rate > 0:
            layers.append(nn.Dropout(dropout_rate))
    return nn.Sequential(*layers)


def normal_log_prob(x: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Log density of independent normals, summed over the last axis."""
    return Independent(Normal(mean, scale), 1).log_prob(x)


def nb_log_likelihood(
    x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, eps: float = 1e-8
) -> torch.Tensor:
    """Negative binomial log likelihood summed over genes; ``mu`` may carry particle axes.

    The same value as :class:`scvi.distributions.NegativeBinomial`, but the terms that do
    not depend on ``mu`` (the three log-gamma functions and ``theta log theta``) are
    computed once per cell instead of once per particle: they are most of the cost.
    """
    x_theta = x + theta
    per_cell = torch.lgamma(x_theta) - torch.lgamma(theta) - torch.lgamma(x + 1)
    per_cell = (per_cell + theta * torch.log(theta + eps)).sum(-1)
    per_particle = x * torch.log(mu + eps) - x_theta * torch.log(theta + mu + eps)
    return per_cell + per_particle.sum(-1)


def kl_normal_standard(mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``KL(N(mean, scale^2) || N(0, 1))`` summed over the last axis."""
    # validate_args=False: called every training step on parameters that are valid by construction
    return kl_divergence(
        Normal(mean, scale, validate_args=False), Normal(0.0, 1.0, validate_args=False)
    ).sum(-1)


def kl_bernoulli(probs: torch.Tensor, prior: float) -> torch.Tensor:
    """``KL(Bernoulli(probs) || Bernoulli(prior))`` summed over the last axis."""
    return kl_divergence(
        Bernoulli(probs=probs, validate_args=False),
        Bernoulli(probs=torch.full_like(probs, prior), validate_args=False),
    ).sum(-1)


class SAMSVAEModule(BaseModuleClass):
    """SAMS-VAE and its no-mask and conditional-VAE baselines.

    Parameters
    ----------
    n_input
        Number of genes.
    n_perturbations
        Number of perturbations (columns of the dosage matrix).
    n_batch
        Number of batches (0 or 1: none); a one-hot batch feeds encoder and decoder.
    n_latent
        Latent dimensions.
    n_hidden
        Width of the hidden layers of encoder, decoder and correlated guide.
    n_layers
        Hidden layers of encoder and decoder.
    variant
        ``"samsvae"``, ``"additive"`` (no masks) or ``"cvae"``.
    guide
        ``"mean_field"`` or ``"correlated"`` (``q(e_t | m_t)``); SAMS-VAE only.
    mask_prior
        Prior probability that a perturbation acts on a latent dimension.
    temperature
        Temperature of the relaxed Bernoulli used for the straight-through masks.
    n_particles
        Monte Carlo particles (global and local samples) per training step.
    offset_guide
        How ``q(z_b | x, offset)`` uses the sampled perturbation offset ``s``, given the
        encoder's Gaussian ``N(g(x), S(x))``: ``"tilt"`` gives ``N(g(x) + S(x) s - s, S(x))``,
        the posterior of an unperturbed cell re-weighted to the shifted prior of ``z``,
        ``N(s, I)`` (exact for a Gaussian posterior; the full latent ``z`` follows the
        counts where they pin it and the prior shift where they do not, so the likelihood
        reaches the shifts there); ``"subtract"`` gives ``N(g(x) - s, S(x))`` (``z`` follows
        the counts whatever ``s``; the shifts learn only from the basal KL);
        ``"none"`` gives ``N(g(x), S(x))`` (the encoder ignores ``s``).
    offset_input
        Feed the sampled offset into the encoder's hidden layer too (weights start at
        zero), so that ``g`` and ``S`` may depend on it.
    dropout_rate
        Dropout in encoder and decoder.
    mask_init
        Initial mask logit; 0 starts at probability 0.5, `None` at the prior,
        ``logit(mask_prior)`` (see :class:`~scsae.models.SAMSVAE`).
    embedding_init
        Standard deviation of the random initial embedding means (see
        :class:`~scsae.models.SAMSVAE`).
    decoder
        ``"mlp"`` (``n_layers`` hidden layers), ``"linear"``: gene proportions
        ``softmax(W z + b)``, or ``"linear_shift"``: ``softmax(f(z_b) + W s)``, an MLP of
        the basal latent plus a linear map of the perturbation offset ``s`` (of the dosage
        for the CVAE), under which perturbation effects add in log expression (see
        :class:`~scsae.models.SAMSVAE`).
    """

    def __init__(
        self,
        n_input: int,
        n_perturbations: int,
        *,
        n_batch: int = 0,
        n_latent: int = 32,
        n_hidden: int = 128,
        n_layers: int = 1,
        variant: Variant = "samsvae",
        guide: Guide = "mean_field",
        mask_prior: float = 0.1,
        temperature: float = 0.5,
        n_particles: int = 5,
        offset_guide: OffsetGuide = "tilt",
        offset_input: bool = False,
        dropout_rate: float = 0.0,
        mask_init: float | None = 0.0,
        basal_covariance: Covariance = "full",
        embedding_init: float = 3.0,
        decoder: Decoder = "mlp",
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            msg = f"variant={variant!r} is not one of {VARIANTS}."
            raise ValueError(msg)
        if guide not in GUIDES:
            msg = f"guide={guide!r} is not one of {GUIDES}."
            raise ValueError(msg)
        if guide == "correlated" and variant != "samsvae":
            msg = f"guide='correlated' conditions embeddings on masks; variant={variant!r} has no masks."
            raise ValueError(msg)
        if offset_guide not in OFFSET_GUIDES:
            msg = f"offset_guide={offset_guide!r} is not one of {OFFSET_GUIDES}."
            raise ValueError(msg)
        if basal_covariance not in COVARIANCES:
            msg = f"basal_covariance={basal_covariance!r} is not one of {COVARIANCES}."
            raise ValueError(msg)
        if decoder not in DECODERS:
            msg = f"decoder={decoder!r} is not one of {DECODERS}."
            raise ValueError(msg)
        if not 0 < mask_prior < 1:
            msg = f"mask_prior={mask_prior} must be in (0, 1)."
            raise ValueError(msg)
        if n_particles < 1:
            msg = f"n_particles={n_particles} must be at least 1."
            raise ValueError(msg)
        if not embedding_init >= 0:
            msg = f"embedding_init={embedding_init} must be non-negative."
            raise ValueError(msg)
        self.n_input = n_input
        self.n_perturbations = n_perturbations
        self.n_batch = n_batch if n_batch > 1 else 0
        self.n_latent = n_latent
        self.variant = variant
        self.guide = guide
        self.mask_prior = float(mask_prior)
        self.temperature = float(temperature)
        self.n_particles = int(n_particles)
        self.offset_guide = "none" if variant == "cvae" else offset_guide
        self.basal_covariance = basal_covariance
        self.open_masks = False
        self.register_buffer("perturbation_counts", torch.zeros(n_perturbations))

        # encoder q(z_b | x, offset or dosage, batch): the network gives the posterior of an
        # unperturbed cell, N(g(x), S(x)); ``offset_guide`` moves it to the perturbed prior
        self.enc_x = nn.Linear(n_input, n_hidden)
        self.enc_dosage = (
            nn.Linear(n_perturbations, n_hidden, bias=False) if variant == "cvae" else None
        )
        self.enc_batch = nn.Linear(self.n_batch, n_hidden, bias=False) if self.n_batch else None
        self.enc_offset = None
        if offset_input and variant != "cvae":
            # starts at zero: the guide begins as the one of ``offset_guide``
            self.enc_offset = nn.Linear(n_latent, n_hidden, bias=False)
            nn.init.zeros_(self.enc_offset.weight)
        self.enc_body = nn.Sequential(
            nn.LayerNorm(n_hidden), nn.ReLU(), _mlp(n_hidden, n_hidden, n_layers - 1, dropout_rate)
        )
        self.enc_mean = nn.Linear(n_hidden, n_latent)
        self.enc_log_scale = nn.Linear(n_hidden, n_latent)
        if basal_covariance == "full":
            # strictly lower-triangular part of the Cholesky factor of q(z_b)'s covariance,
            # starting diagonal; ``latent_transform`` carries the maps of ``transform_latent``
            self.enc_tril = nn.Linear(n_hidden, n_latent * (n_latent - 1) // 2)
            nn.init.zeros_(self.enc_tril.weight)
            nn.init.zeros_(self.enc_tril.bias)
            self.register_buffer("tril_index", torch.tril_indices(n_latent, n_latent, -1))
            self.register_buffer("latent_transform", torch.eye(n_latent))

        shift_in = decoder == "linear_shift"
        n_dec_in = n_latent + (n_perturbations if variant == "cvae" and not shift_in else 0)
        n_dec_in += self.n_batch
        if decoder == "linear":
            self.decoder = nn.Sequential(nn.Linear(n_dec_in, n_input))
        else:
            self.decoder = nn.Sequential(
                _mlp(n_dec_in, n_hidden, n_layers, dropout_rate), nn.Linear(n_hidden, n_input)
            )
        self.decoder_kind = decoder
        self.shift_decoder = None
        if shift_in:
            # the perturbation's offset (the dosage for the CVAE) moves the logits linearly
            n_shift = n_perturbations if variant == "cvae" else n_latent
            self.shift_decoder = nn.Linear(n_shift, n_input, bias=False)
        self.log_theta = nn.Parameter(torch.full((n_input,), math.log(10.0)))

        # variational globals
        if variant != "cvae":
            self.emb_mean = nn.Parameter(embedding_init * torch.randn(n_perturbations, n_latent))
            self.emb_log_scale = nn.Parameter(
                torch.full((n_perturbations, n_latent), math.log(0.1))
            )
        if variant == "samsvae":
            # masks started at a sparse prior are rarely sampled open, so they and their
            # embeddings get little gradient and stay closed; 0.5 lets the data decide
            init = (
                math.log(self.mask_prior / (1 - self.mask_prior))
                if mask_init is None
                else mask_init
            )
            self.mask_logits = nn.Parameter(torch.full((n_perturbations, n_latent), float(init)))
        if guide == "correlated":
            # q(e_t | m_t): a per-perturbation code and the mask go through a small network
            # whose output is added to the mean-field parameters above
            self.guide_code = nn.Parameter(0.1 * torch.randn(n_perturbations, n_latent))
            self.guide_net = nn.Sequential(
                nn.Linear(2 * n_latent, n_hidden), nn.ReLU(), nn.Linear(n_hidden, 2 * n_latent)
            )
            nn.init.zeros_(self.guide_net[-1].weight)
            nn.init.zeros_(self.guide_net[-1].bias)

    @property
    def reads_offset(self) -> bool:
        """Whether the basal encoder takes the sampled offset (subtracts it or reads it)."""
        return self.offset_guide != "none" or self.enc_offset is not None

    # --- globals ----------------------------------------------------------------
    def global_parameters(self) -> list[nn.Parameter]:
        """Variational parameters of the global latents (masks, embeddings, correlated guide)."""
        names = ("emb_mean", "emb_log_scale", "mask_logits", "guide_code")
        params = [getattr(self, n) for n in names if hasattr(self, n)]
        if self.guide == "correlated":
            params += list(self.guide_net.parameters())
        return params

    @property
    def has_globals(self) -> bool:
        """Whether the variant has perturbation embeddings (all but the CVAE)."""
        return self.variant != "cvae"

    def mask_probabilities(self) -> torch.Tensor:
        """``q(m_t,d = 1)``, perturbations x latent dims."""
        return torch.sigmoid(self.mask_logits)

    def expected_shift(self) -> torch.Tensor:
        """Posterior mean shifts ``E[e_t * m_t]`` (the embedding means while masks are open)."""
        if self.variant == "samsvae" and not self.open_masks:
            return self.emb_mean * self.mask_probabilities()
        return self.emb_mean

    def _embedding_params(self, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and scale of ``q(e | m)`` (broadcast over the particles of ``mask``)."""
        mean, log_scale = self.emb_mean, self.emb_log_scale
        if self.guide == "correlated" and mask is not None:
            code = self.guide_code.expand_as(mask)
            d_mean, d_log_scale = self.guide_net(torch.cat([mask, code], -1)).chunk(2, -1)
            mean, log_scale = mean + d_mean, log_scale + d_log_scale
        elif mask is not None:
            mean, log_scale = mean.expand_as(mask), log_scale.expand_as(mask)
        return mean, torch.exp(log_scale.clamp(-7, 3))

    def sample_globals(self, n_particles: int) -> dict[str, torch.Tensor]:
        """Sample masks and embeddings, ``n_particles`` x perturbations x latent.

        In training mode masks are straight-through relaxed Bernoulli samples (hard
        in the forward pass, relaxed gradients); in eval mode plain Bernoulli draws.
        Returns ``shift`` (``e * m``) and ``kl`` (particles x perturbations).
        """
        shape = (n_particles, self.n_perturbations, self.n_latent)
        mask = None
        kl = torch.zeros(n_particles, self.n_perturbations, device=self.emb_mean.device)
        if self.variant == "samsvae" and not self.open_masks:
            logits = self.mask_logits.expand(shape)
            if self.training:
                u = torch.rand(shape, device=logits.device).clamp(1e-6, 1 - 1e-6)
                soft = torch.sigmoid((logits + torch.log(u) - torch.log1p(-u)) / self.temperature)
                mask = (soft > 0.5).to(soft.dtype) + soft - soft.detach()
            else:
                mask = torch.bernoulli(torch.sigmoid(logits))
            kl = kl + kl_bernoulli(self.mask_probabilities(), self.mask_prior).expand(
                n_particles, -1
            )
        mean, scale = self._embedding_params(mask)
        mean, scale = mean.expand(shape), scale.expand(shape)
        emb = mean + scale * torch.randn(shape, device=mean.device)
        kl = kl + kl_normal_standard(mean, scale)
        shift = emb if mask is None else emb * mask
        return {"shift": shift, "kl": kl, "mask": mask, "embedding": emb}

    @torch.no_grad()
    def point_shift(self) -> torch.Tensor:
        """Posterior point estimate of ``e_t * m_t``: most probable mask times mean embedding."""
        if self.variant == "samsvae":
            mask = (self.mask_probabilities() > 0.5).float()
            mean, _ = self._embedding_params(mask[None])
            return mean[0] * mask
        return self.emb_mean.detach().clone()

    @torch.no_grad()
    def transform_latent(self, matrix: torch.Tensor) -> None:
        """Express the latent space in new coordinates, ``z' = z @ matrix`` (invertible).

        The decoder's first layer absorbs the inverse map and the encoder mean, the
        embedding means and (with ``basal_covariance="full"``) the covariance of
        ``q(z_b)`` are mapped, so ``p(x | z)`` and ``q(z_b | x)`` are unchanged as
        distributions over the new coordinates. With a diagonal covariance only
        rotations are meaningful and the scales are kept (an approximation). The
        embedding means become the expected shifts ``E[e_t * m_t]`` mapped; the
        embeddings' diagonal scales are kept. SAMS-VAE masks restart at the
        prior (the old masks refer to the old axes). With ``offset_guide="tilt"`` the
        guide of perturbed cells follows from the mapped ``N(g, S)`` and the prior of the
        new coordinates, as before the map.
        """
        if self.variant == "cvae":
            msg = "The conditional VAE has no perturbation embeddings to align."
            raise ValueError(msg)
        m = matrix.to(self.emb_mean.device, self.emb_mean.dtype)
        n = self.n_latent
        self.enc_mean.weight.copy_(m.T @ self.enc_mean.weight)
        self.enc_mean.bias.copy_(self.enc_mean.bias @ m)
        inverse_t = torch.linalg.inv(m).T
        first = self.decoder[0] if self.decoder_kind == "linear" else self.decoder[0][0]
        first.weight[:, :n] = first.weight[:, :n] @ inverse_t
        if self.shift_decoder is not None:
            self.shift_decoder.weight.copy_(self.shift_decoder.weight @ inverse_t)
        if self.enc_offset is not None:  # the offset it reads is mapped too
            self.enc_offset.weight.copy_(self.enc_offset.weight @ inverse_t)
        self.emb_mean.copy_(self.expected_shift() @ m)
        if self.basal_covariance == "full":
            self.latent_transform.copy_(self.latent_transform @ m)
        if self.variant == "samsvae":
            # restart the masks at the prior: they are relearnt on the new axes
            self.mask_logits.fill_(math.log(self.mask_prior / (1 - self.mask_prior)))

    # --- encoder / decoder ----------------------------------------------------------
    def _batch_onehot(self, batch_index: torch.Tensor | None, n: int) -> torch.Tensor | None:
        if not self.n_batch or batch_index is None:
            return None
        return F.one_hot(batch_index.reshape(n).long(), self.n_batch).float()

    def encode(
        self,
        x: torch.Tensor,
        *,
        offset: torch.Tensor | None = None,
        dosage: torch.Tensor | None = None,
        batch: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and scale of ``q(z_b | x, ...)``; ``offset`` may carry a leading particle axis.

        ``offset_guide`` says how the mean uses ``offset`` (see the class docstring).
        """
        library = x.sum(-1, keepdim=True).clamp(min=1.0)
        h = self.enc_x(torch.log1p(x / library * 1e4))
        if self.enc_dosage is not None and dosage is not None:
            h = h + self.enc_dosage(dosage)
        if self.enc_batch is not None and batch is not None:
            h = h + self.enc_batch(batch)
        if self.enc_offset is not None and offset is not None:
            h = h + self.enc_offset(offset)  # (particles x) cells x hidden
        h = self.enc_body(h)
        mean = self.enc_mean(h)
        scale = torch.exp(self.enc_log_scale(h).clamp(-7, 3))
        if self.basal_covariance == "full":
            tril = torch.diag_embed(scale)
            rows, cols = self.tril_index
            tril[..., rows, cols] = self.enc_tril(h)
            scale = tril
        if offset is not None and self.offset_guide == "subtract":
            mean = mean - offset
        elif offset is not None and self.offset_guide == "tilt":
            # N(g, S) re-weighted by N(z; s, I) / N(z; 0, I) is N(g + S s, S) in z = z_b + s
            mean = mean + self.basal_covariance_times(scale, offset) - offset
        return mean, scale

    def _untransformed(self) -> bool:
        """Whether no :meth:`transform_latent` map has been applied (its products can be skipped)."""
        transform = self.latent_transform
        return torch.equal(transform, torch.eye(self.n_latent, device=transform.device))

    def basal_covariance_times(self, scale: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``v @ Sigma`` for the covariance ``Sigma`` of ``q(z_b)``; ``v`` may carry particle axes."""
        if self.basal_covariance == "diagonal":
            return v * scale**2
        transform = self.latent_transform
        identity = self._untransformed()
        u = v if identity else v @ transform.T
        u = ((u.unsqueeze(-2) @ scale) @ scale.transpose(-1, -2)).squeeze(-2)
        return u if identity else u @ transform

    # --- q(z_b): diagonal scales (..., d) or a Cholesky factor (..., d, d) ---------------
    def sample_basal(
        self, mean: torch.Tensor, scale: torch.Tensor, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Reparameterised draw from ``q(z_b)``; ``mean`` may carry leading particle axes.

        With a full covariance the draw is ``mean + (L eps) @ T``: ``L`` is the encoder's
        Cholesky factor in its own frame, ``T = latent_transform`` the accumulated linear
        map of :meth:`transform_latent`.
        """
        noise = torch.randn_like(mean) if noise is None else noise
        if self.basal_covariance == "diagonal":
            return mean + scale * noise
        return mean + (scale @ noise.unsqueeze(-1)).squeeze(-1) @ self.latent_transform

    def basal_log_prob(
        self, z: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor
    ) -> torch.Tensor:
        """``log q(z_b)`` summed over the latent dimensions."""
        if self.basal_covariance == "diagonal":
            return normal_log_prob(z, mean, scale)
        # z = mean + y @ T with y ~ N(0, L L^T): the density of y at (z - mean) T^-1, over |det T|
        transform = self.latent_transform
        resid = z - mean
        if self._untransformed():
            return MultivariateNormal(torch.zeros_like(resid), scale_tril=scale).log_prob(resid)
        y = resid @ torch.linalg.inv(transform)
        log_q = MultivariateNormal(torch.zeros_like(y), scale_tril=scale).log_prob(y)
        return log_q - torch.linalg.slogdet(transform)[1]

    def basal_factor(self, scale: torch.Tensor) -> torch.Tensor:
        """Square root ``A = T^T L`` of the covariance ``Sigma = A A^T`` of a full ``q(z_b)``.

        The draw of :meth:`sample_basal` is ``mean + A eps`` (as a column vector); ``A`` is
        lower triangular only while no :meth:`transform_latent` map has been applied.
        """
        if self._untransformed():
            return scale
        return self.latent_transform.T @ scale

    def basal_covariance_matrix(self, scale: torch.Tensor) -> torch.Tensor:
        """Covariance of ``q(z_b)``, ``(..., d, d)``, as sampled by :meth:`sample_basal`."""
        if self.basal_covariance == "diagonal":
            return torch.diag_embed(scale**2)
        factor = self.basal_factor(scale)
        return factor @ factor.transpose(-1, -2)

    def basal_kl(self, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """``KL(q(z_b) || N(0, I))`` summed over the latent dimensions.

        For a full covariance ``Sigma = T^T L L^T T`` the trace term is ``||L^T T||_F^2``
        and ``log det Sigma = 2 (log det L + log |det T|)``.
        """
        if self.basal_covariance == "diagonal":
            return kl_normal_standard(mean, scale)
        log_det = torch.log(torch.diagonal(scale, dim1=-2, dim2=-1)).sum(-1)
        if self._untransformed():
            # no transform_latent yet: skip a (cells x d x d) @ (d x d) product, O(d^3) per cell
            trace = (scale**2).sum((-2, -1))
        else:
            log_det = log_det + torch.linalg.slogdet(self.latent_transform)[1]
            trace = (self.basal_factor(scale) ** 2).sum((-2, -1))
        return 0.5 * ((mean**2).sum(-1) + trace - self.n_latent) - log_det

    def decode(
        self,
        z: torch.Tensor,
        *,
        dosage: torch.Tensor | None = None,
        batch: torch.Tensor | None = None,
        offset: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Gene proportions ``softmax(decoder(z))`` (rows sum to 1).

        With ``decoder="linear_shift"`` the MLP reads the basal latent ``z - offset`` and the
        offset (the dosage for the CVAE) adds to the logits linearly; no offset is zero.
        """
        shift = None
        if self.shift_decoder is not None:
            if self.variant == "cvae":
                shift = self.shift_decoder(dosage)
            elif offset is not None:
                z = z - offset
                shift = self.shift_decoder(offset)
        parts = [z]
        if self.variant == "cvae" and self.shift_decoder is None:
            parts.append(dosage.expand(*z.shape[:-1], dosage.shape[-1]))
        if self.n_batch and batch is not None:
            parts.append(batch.expand(*z.shape[:-1], batch.shape[-1]))
        h = torch.cat(parts, -1) if len(parts) > 1 else z
        logits = self.decoder(h)
        return torch.softmax(logits if shift is None else logits + shift, -1)

    # --- scvi-tools interface -------------------------------------------------------
    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {
            "x": tensors[REGISTRY_KEYS.X_KEY],
            "dosage": tensors[DOSAGE_KEY],
            "batch_index": tensors.get(REGISTRY_KEYS.BATCH_KEY),
        }

    @auto_move_data
    def inference(
        self,
        x: torch.Tensor,
        dosage: torch.Tensor,
        batch_index: torch.Tensor | None = None,
        n_particles: int | None = None,
    ) -> dict[str, Any]:
        """Sample globals and ``z_b``; returns latents (particles x cells x dims) and KLs."""
        k = self.n_particles if n_particles is None else int(n_particles)
        batch = self._batch_onehot(batch_index, x.shape[0])
        library = x.sum(-1, keepdim=True)
        if self.has_globals:
            glob = self.sample_globals(k)
            offset = torch.einsum("bt,ktd->kbd", dosage, glob["shift"])
            kl_global = glob["kl"]
        else:
            offset = torch.zeros(k, x.shape[0], self.n_latent, device=x.device)
            kl_global = None
        qz_mean, qz_scale = self.encode(
            x, offset=offset if self.reads_offset else None, dosage=dosage, batch=batch
        )
        qz_mean = qz_mean.expand(k, *x.shape[:1], self.n_latent)
        z_basal = self.sample_basal(qz_mean, qz_scale)
        return {
            "z_basal": z_basal,
            "z": z_basal + offset,
            "offset": offset,
            "qz_mean": qz_mean,
            "qz_scale": qz_scale,
            "kl_global": kl_global,
            "library": library,
            "batch": batch,
        }

    def _get_generative_input(
        self, tensors: dict[str, torch.Tensor], inference_outputs: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "z": inference_outputs["z"],
            "library": inference_outputs["library"],
            "dosage": tensors[DOSAGE_KEY],
            "batch": inference_outputs["batch"],
            "offset": inference_outputs.get("offset"),
        }

    @auto_move_data
    def generative(
        self,
        z: torch.Tensor,
        library: torch.Tensor,
        dosage: torch.Tensor,
        batch: torch.Tensor | None = None,
        offset: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """NB means ``library * softmax(decoder(z))`` and per-gene dispersion."""
        px_scale = self.decode(z, dosage=dosage, batch=batch, offset=offset)
        return {
            "px_scale": px_scale,
            "px_rate": library * px_scale,
            "theta": torch.exp(self.log_theta),
        }

    def log_likelihood(
        self, x: torch.Tensor, generative_outputs: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """``log p(x | z)`` summed over genes (particles x cells)."""
        return nb_log_likelihood(x, generative_outputs["px_rate"], generative_outputs["theta"])

    def global_kl_per_cell(
        self, dosage: torch.Tensor, kl_global: torch.Tensor | None
    ) -> torch.Tensor:
        """Each cell's share of the global KL: ``sum_t [d_t != 0] KL_t / n_t``."""
        if kl_global is None:
            return dosage.new_zeros(dosage.shape[0])
        counts = self.perturbation_counts
        weight = torch.where(counts > 0, 1.0 / counts.clamp(min=1.0), torch.zeros_like(counts))
        return (dosage != 0).to(dosage.dtype) @ (kl_global.mean(0) * weight)

    def loss(
        self,
        tensors: dict[str, torch.Tensor],
        inference_outputs: dict[str, Any],
        generative_outputs: dict[str, torch.Tensor],
        kl_weight: float = 1.0,
    ) -> LossOutput:
        """Negative ELBO per cell, averaged over particles and the minibatch."""
        x = tensors[REGISTRY_KEYS.X_KEY]
        reconstruction = -self.log_likelihood(x, generative_outputs).mean(0)
        kl_basal = self.basal_kl(inference_outputs["qz_mean"], inference_outputs["qz_scale"])
        kl_basal = kl_basal.mean(0)
        kl_global = self.global_kl_per_cell(tensors[DOSAGE_KEY], inference_outputs["kl_global"])
        loss = torch.mean(reconstruction + kl_weight * (kl_basal + kl_global))
        return LossOutput(
            loss=loss,
            reconstruction_loss=reconstruction,
            kl_local={"kl_basal": kl_basal, "kl_global_share": kl_global},
        )

    @torch.no_grad()
    def iwelbo(
        self,
        x: torch.Tensor,
        dosage: torch.Tensor,
        batch_index: torch.Tensor | None = None,
        *,
        n_particles: int = 100,
    ) -> torch.Tensor:
        """Importance-weighted ELBO of ``log p(x | d)`` per cell.

        Each particle draws the globals from their posterior and ``z_b`` from the
        encoder; the weights are ``p(x | z) p(z_b) / q(z_b | ...)``, so the bound is
        on the posterior predictive likelihood and comparable across variants.
        """
        inf = self.inference(x, dosage, batch_index, n_particles=n_particles)
        gen = self.generative(inf["z"], inf["library"], dosage, inf["batch"], inf["offset"])
        z_b = inf["z_basal"]
        log_w = (
            self.log_likelihood(x, gen)
            + normal_log_prob(z_b, torch.zeros_like(z_b), torch.ones_like(z_b))
            - self.basal_log_prob(z_b, inf["qz_mean"], inf["qz_scale"])
        )
        return torch.logsumexp(log_w, 0) - math.log(n_particles)
