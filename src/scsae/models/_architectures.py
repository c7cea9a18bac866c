"""SAE activation functions, one registry keyed by name.

Each architecture is a small :class:`torch.nn.Module` that maps encoder
pre-activations to sparse feature activations and returns its sparsity
penalty (zero where sparsity is enforced structurally). Learned per-feature
state (thresholds) lives in the architecture, hence in the module's
``state_dict``. To add an architecture, subclass :class:`Architecture` in
this file and register it with :func:`register`.

Architectures whose active set is a selection (TopK, BatchTopK) also offer
:meth:`Architecture.select`, which lets :class:`~scsae.models.SAEModule`
train with its sparse kernel: decode from ``(indices, values)`` without
forming the dense cells x features activation matrix.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from ._sae_config import SAEConfig

ARCHITECTURES: dict[str, type[Architecture]] = {}


def register(cls: type[Architecture]) -> type[Architecture]:
    """Add an architecture class to :data:`ARCHITECTURES` under ``cls.name``."""
    ARCHITECTURES[cls.name] = cls
    return cls


def get_architecture(name: str) -> type[Architecture]:
    """Architecture class by name, with a helpful error for unknown names."""
    if name not in ARCHITECTURES:
        msg = f"Unknown architecture {name!r}; choose one of {sorted(ARCHITECTURES)}."
        raise ValueError(msg)
    return ARCHITECTURES[name]


class Architecture(nn.Module):
    """Base class: ``forward(pre_acts, decoder_norms) -> (activations, sparsity_loss)``."""

    name: ClassVar[str]
    #: whether the training loop keeps decoder rows at unit norm
    unit_norm_decoder: ClassVar[bool] = True
    #: whether ``k`` sets the number of active features
    uses_k: ClassVar[bool] = False
    #: default penalty weight (for penalised architectures)
    default_sparsity_coefficient: ClassVar[float] = 0.0
    #: whether :meth:`select` is implemented (training can use the sparse kernel)
    supports_sparse: ClassVar[bool] = False
    #: sizes of the nested feature prefixes that must each reconstruct the input (Matryoshka), () for none
    prefix_sizes: tuple[int, ...] = ()

    def __init__(self, config: SAEConfig) -> None:
        super().__init__()
        self.n_features = config.n_features
        self.k = config.k
        coef = config.sparsity_coefficient
        self.sparsity_coefficient = self.default_sparsity_coefficient if coef is None else coef

    def forward(self, pre_acts: Tensor, decoder_norms: Tensor) -> tuple[Tensor, Tensor]:
        """Activations and sparsity penalty from pre-activations."""
        raise NotImplementedError

    @torch.no_grad()
    def calibrate(self, pre_acts: Tensor) -> None:
        """Fix inference-time state from training pre-activations (default: nothing)."""

    @torch.no_grad()
    def select(self, pre_acts: Tensor) -> tuple[Tensor, Tensor | None]:
        """Active features for the sparse training kernel (no gradient).

        Must update any training state exactly as :meth:`forward` would.

        Returns
        -------
        ``(indices, None)`` with ``indices`` of shape cells x k when every cell has
        ``k`` entries, or ``(indices, rows)``, two flat tensors sorted by row.
        Entries whose pre-activation is not positive are allowed: their value is zero.
        """
        msg = f"Architecture {self.name!r} has no sparse kernel."
        raise NotImplementedError(msg)


def _topk_dense(values: Tensor, k: int) -> Tensor:
    top = values.topk(k, dim=-1, sorted=False)
    return torch.zeros_like(values).scatter_(-1, top.indices, top.values)


@register
class TopK(Architecture):
    """Exactly ``k`` active features per cell (Gao et al. 2024); no penalty to tune."""

    name = "topk"
    uses_k = True
    supports_sparse = True

    def forward(self, pre_acts: Tensor, decoder_norms: Tensor) -> tuple[Tensor, Tensor]:
        return _topk_dense(torch.relu(pre_acts), self.k), pre_acts.new_zeros(())

    @torch.no_grad()
    def select(self, pre_acts: Tensor) -> tuple[Tensor, None]:
        # the ReLU does not change which k are largest; non-positive picks get value 0
        return pre_acts.topk(self.k, dim=-1, sorted=False).indices, None


@register
class BatchTopK(Architecture):
    """``k`` active features per cell on average over a batch (Bussmann et al. 2024).

    Training keeps the ``k * batch`` largest activations of the batch, so cells
    can use more or fewer features. For inference a global threshold replaces
    the batch: during training it tracks the mean smallest kept activation;
    after training it is calibrated on training cells so that their mean L0 is
    exactly ``k``. One cell then encodes the same way whatever else is in its batch.
    """

    name = "batchtopk"
    uses_k = True
    supports_sparse = True

    def __init__(self, config: SAEConfig) -> None:
        super().__init__(config)
        self.register_buffer("threshold", torch.tensor(-1.0))
        self.register_buffer("n_updates", torch.tensor(0, dtype=torch.long))

    def forward(self, pre_acts: Tensor, decoder_norms: Tensor) -> tuple[Tensor, Tensor]:
        acts = torch.relu(pre_acts)
        if self.training:
            flat = acts.flatten()
            n_keep = min(self.k * acts.shape[0], flat.numel())
            top = flat.topk(n_keep, sorted=False)
            out = torch.zeros_like(flat).scatter_(0, top.indices, top.values).view_as(acts)
            self._track_threshold(top.values)
            return out, pre_acts.new_zeros(())
        if self.n_updates == 0:  # untrained: fall back to per-cell top-k
            return _topk_dense(acts, self.k), pre_acts.new_zeros(())
        return acts * (acts > self.threshold), pre_acts.new_zeros(())

    @torch.no_grad()
    def _track_threshold(self, kept_values: Tensor) -> None:
        """Running mean, over training batches, of the smallest positive kept activation."""
        kept = kept_values[kept_values > 0]
        if kept.numel():
            self.n_updates += 1
            self.threshold += (kept.min() - self.threshold.clamp_min(0)) / self.n_updates
            self.threshold.clamp_(min=0)

    @torch.no_grad()
    def select(self, pre_acts: Tensor) -> tuple[Tensor, Tensor]:
        flat = torch.relu(pre_acts).flatten()
        n_keep = min(self.k * pre_acts.shape[0], flat.numel())
        top = flat.topk(n_keep, sorted=False)
        self._track_threshold(top.values)
        position = top.indices.sort().values
        n = pre_acts.shape[-1]
        return position % n, torch.div(position, n, rounding_mode="floor")

    @torch.no_grad()
    def calibrate(self, pre_acts: Tensor) -> None:
        """Set the threshold to the ``k * n_cells``-th largest activation of the sample."""
        flat = torch.relu(pre_acts).flatten()
        n_keep = min(self.k * pre_acts.shape[0], flat.numel())
        kth = flat.topk(n_keep, sorted=False).values.min()
        self.threshold.fill_(float(kth.clamp_min(0)))
        self.n_updates.clamp_(min=1)


MATRYOSHKA_FRACTIONS = (1 / 8, 1 / 4, 1 / 2, 1)


def prefix_sizes(sizes: tuple[int, ...] | list[int] | None, n_features: int) -> tuple[int, ...]:
    """Validated, increasing prefix sizes ending at ``n_features``.

    `None`: the first eighth, quarter, half and all of the features.
    """
    if sizes is None:
        sizes = [max(1, round(f * n_features)) for f in MATRYOSHKA_FRACTIONS]
    sizes = sorted({int(s) for s in sizes} | {n_features})
    if sizes[0] < 1 or sizes[-1] > n_features:
        msg = f"prefix_sizes={sizes} must lie between 1 and n_features={n_features}."
        raise ValueError(msg)
    return tuple(sizes)


@register
class Matryoshka(BatchTopK):
    """BatchTopK whose nested prefixes of features each reconstruct alone (Bussmann et al. 2025).

    Activations are BatchTopK's; the loss adds, for every prefix in
    ``prefix_sizes`` (default: the first 1/8, 1/4, 1/2 of the features), the
    FVU of the reconstruction from that prefix's features only. The first
    features must then explain the most variance on their own, so they come
    out coarse (cell identity) and later ones refine them (states,
    programmes); features keep this order in ``obsm`` and the decoder.
    Trained with the dense kernel (the prefix losses read every activation).
    """

    name = "matryoshka"

    def __init__(self, config: SAEConfig) -> None:
        super().__init__(config)
        self.prefix_sizes = prefix_sizes(config.prefix_sizes, config.n_features)


@register
class ReLU(Architecture):
    """ReLU with an L1 penalty weighted by decoder row norms.

    Following Anthropic's 2024 training update, decoder rows are left free and
    the penalty is ``coef * sum_i f_i * ||W_dec_i||``, so the model cannot
    shrink activations by growing decoder norms. After training the norms are
    folded into the encoder (exact, as ReLU is positively homogeneous) so that
    all architectures report unit-norm decoder rows.
    """

    name = "relu"
    unit_norm_decoder = False
    default_sparsity_coefficient = 0.05

    def forward(self, pre_acts: Tensor, decoder_norms: Tensor) -> tuple[Tensor, Tensor]:
        acts = torch.relu(pre_acts)
        penalty = (acts * decoder_norms).sum(-1).mean()
        return acts, self.sparsity_coefficient * penalty


class _JumpReLUFunction(torch.autograd.Function):
    """``z * H(z - theta)`` with the rectangle-kernel pseudo-derivative for ``theta``."""

    @staticmethod
    def forward(ctx, z: Tensor, theta: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(z, theta)
        ctx.bandwidth = bandwidth
        return z * (z > theta)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        z, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        near = ((z - theta).abs() < eps / 2).to(grad.dtype)
        grad_theta = (-(theta / eps) * near * grad).sum(0)
        return grad * (z > theta), grad_theta, None


class _StepFunction(torch.autograd.Function):
    """``H(z - theta)``; gradient only to ``theta``, through the same kernel."""

    @staticmethod
    def forward(ctx, z: Tensor, theta: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(z, theta)
        ctx.bandwidth = bandwidth
        return (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[None, Tensor, None]:
        z, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        near = ((z - theta).abs() < eps / 2).to(grad.dtype)
        return None, (-(1.0 / eps) * near * grad).sum(0), None


@register
class JumpReLU(Architecture):
    """JumpReLU with a direct L0 penalty (Rajamanoharan et al. 2024).

    Per-feature thresholds ``theta = exp(log_threshold)`` are learned through
    straight-through estimators with a rectangle kernel of width
    ``bandwidth``. Inputs are scaled to unit mean squared norm, so activations
    are of order ``1/sqrt(n_dims)``; threshold and bandwidth start at a small
    fraction of that.
    """

    name = "jumprelu"
    default_sparsity_coefficient = 5e-3

    def __init__(self, config: SAEConfig) -> None:
        super().__init__(config)
        scale = 1.0 / math.sqrt(config.n_input)
        self.bandwidth = 0.05 * scale
        self.log_threshold = nn.Parameter(torch.full((config.n_features,), math.log(0.1 * scale)))

    def forward(self, pre_acts: Tensor, decoder_norms: Tensor) -> tuple[Tensor, Tensor]:
        theta = self.log_threshold.exp()
        acts = _JumpReLUFunction.apply(pre_acts, theta, self.bandwidth)
        l0 = _StepFunction.apply(pre_acts, theta, self.bandwidth).sum(-1).mean()
        return acts, self.sparsity_coefficient * l0
