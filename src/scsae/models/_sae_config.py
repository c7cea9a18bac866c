"""Hyper-parameters of an SAE module.

Apart from the module, so that the architectures and the model shell can name
the type without importing the maths (no import cycle).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class SAEConfig:
    """Hyper-parameters of an SAE module (one field per choice).

    Parameters
    ----------
    n_input
        Input dimensions.
    n_features
        Dictionary size.
    architecture
        Key of :data:`~scsae.models.ARCHITECTURES`.
    k
        Active features per cell (TopK variants).
    sparsity_coefficient
        Penalty weight for penalised architectures; `None` for their default.
    aux_k
        Dead features used by the AuxK loss to model the residual; `None` for
        ``n_input // 2`` (as in Gao et al. 2024).
    aux_coefficient
        Weight of the AuxK loss (1/32, Gao et al. 2024).
    dead_after_cells
        A feature that did not fire in this many training cells counts as dead
        and is trained by the AuxK loss.
    kernel
        Training kernel of selection architectures (TopK, BatchTopK):
        ``"dense"`` forms the cells x features activation matrix and multiplies
        it by the decoder; ``"sparse"`` decodes from ``(indices, values)`` with
        gathers (``embedding_bag``), so decoder and encoder gradients touch only
        the selected features; ``"auto"`` (default) takes ``"sparse"`` from
        1,024 features on, where it became the faster
        on CPU, and ``"dense"`` below. A size rule, not a timing, so the same seed
        gives bit-identical results. Other architectures are always dense. Both
        kernels compute the same step up to float rounding.
    encoder_init
        ``"transpose"``: the encoder starts as the transpose of the unit-norm
        decoder. ``"least_squares"`` (TopK, BatchTopK): that encoder is then
        scaled by the one factor that best reconstructs a sample of training
        cells (:meth:`SAEModule.initialize_encoder_scale`), and the decoder
        trains with the learning rate divided by that factor, so that Adam moves
        encoder and decoder rows by the same fraction of their norm. ``"auto"``
        (default): ``"least_squares"`` for TopK and BatchTopK, ``"transpose"``
        otherwise (their encoder scale decides which features fire).
    prefix_sizes
        Matryoshka only: sizes of the nested feature prefixes that must each
        reconstruct the input; `None` for the first 1/8, 1/4, 1/2 and all features.
    """

    n_input: int
    n_features: int
    architecture: str = "topk"
    k: int = 16
    sparsity_coefficient: float | None = None
    aux_k: int | None = None
    aux_coefficient: float = 1 / 32
    dead_after_cells: int = 100_000
    kernel: str = "auto"
    encoder_init: str = "auto"
    prefix_sizes: tuple[int, ...] | None = None

    def to_dict(self) -> dict:
        """Plain-dict form for saving."""
        return asdict(self)
