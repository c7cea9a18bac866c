"""Default sizes and training settings of the SAE, as functions of the data's size.

One place for every rule that fills a setting the user left as `None`; the
study behind them is ``benchmarks/sae_defaults_study.py`` (docs/sae.md).
"""

from __future__ import annotations

import math

STEPS_TARGET = 3000
#: cells per feature below which a default dictionary is not made wider
CELLS_PER_FEATURE = 10


def default_k(n_dims: int) -> int:
    """``min(16, n_dims // 2)``, at least 1."""
    return max(1, min(16, n_dims // 2))


def default_n_features(n_dims: int, n_obs: int, k: int, expansion_factor: float) -> int:
    """``expansion_factor * n_dims``, capped at ``n_obs // 10`` (and at least ``k + 1``).

    The cap keeps at least :data:`CELLS_PER_FEATURE` cells per feature:
    with fewer, the dictionary memorises training cells and its held-out FVU
    rises (``pbmc68k_reduced``: 700 cells, 350 features: held-out FVU 0.19,
    training 0.05; 64 features: 0.15 and 0.07; the study in docs/sae.md).
    """
    cap = n_obs // CELLS_PER_FEATURE
    return int(max(k + 1, min(round(expansion_factor * n_dims), cap)))


def default_batch_size(n_train: int) -> int:
    """``n_train // 8`` clipped to 32-4096 (and to ``n_train``)."""
    return int(min(n_train, max(32, min(4096, n_train // 8))))


def default_lr(n_features: int) -> float:
    """``6e-4 / sqrt(n_features / 2**14)`` capped at ``1e-2``.

    The ``1/sqrt(width)`` scaling of Gao et al. (2024), with a constant 3x theirs:
    single-cell dictionaries are 10-100x narrower than LLM ones and their constant
    left simulated dictionaries unrecovered after thousands of steps (32% of true
    directions at 1,000 steps against 99.6% at 3x).
    """
    return float(min(1e-2, 6e-4 / math.sqrt(n_features / 2**14)))


def default_max_epochs(n_train: int, batch_size: int) -> int:
    """Enough epochs for about 3,000 steps, between 1 and 1,000."""
    steps_per_epoch = max(1, n_train // batch_size)
    return int(min(1000, max(1, math.ceil(STEPS_TARGET / steps_per_epoch))))


def k_candidates(n_dims: int) -> list[int]:
    """Values of ``k`` that :func:`scsae.tl.sae` tries when none is given, largest first.

    :func:`default_k` and the powers of two below it (16, 8, 4, 2 for 32 or more dims).
    """
    top = default_k(n_dims)
    return sorted({top} | {2**i for i in range(1, 5) if 2**i < top}, reverse=True)


def sparsity_gain(heldout_fvu: float, baseline_fvu_rank_k: float) -> float:
    """Held-out FVU of the SAE over that of the rank-``k`` PCA: lower is better.

    The criterion that selects ``k`` (:func:`scsae.tl.sae`). Held-out FVU alone
    always prefers a larger ``k``, and so does the PCA's; their ratio is what
    ``k`` sparse features buy over ``k`` linear ones, and it is lowest where the
    cells are truly ``k``-sparse in some dictionary. An embedding of rank ``k``
    or less (baseline FVU 0) scores `inf`.
    """
    if not baseline_fvu_rank_k > 0:
        return math.inf
    return float(heldout_fvu / baseline_fvu_rank_k)
