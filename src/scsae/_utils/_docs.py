"""Parameter descriptions shared by several docstrings, written once."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)

DOC_ADATA = """\
adata
    Annotated data matrix (:class:`~anndata.AnnData` or :class:`~mudata.MuData`)."""

DOC_USE_REP = """\
use_rep
    Key in ``adata.obsm`` of the embedding to model (e.g. ``"X_pca"``, ``"X_scVI"``,
    a MOFA or WNN embedding of a MuData), or ``"X"`` for the data matrix itself.
layer
    Key in ``adata.layers`` to model instead of ``use_rep``."""

DOC_ARCHITECTURE = """\
n_features
    Dictionary size (number of SAE features). Defaults to ``expansion_factor`` times
    the number of input dimensions, capped at a tenth of the number of cells: with
    fewer than about 10 cells per feature the dictionary memorises training cells
    and its held-out FVU rises (the study in the SAE docs).
expansion_factor
    Features per input dimension when ``n_features`` is not given.
k
    Active features per cell for ``"topk"`` (exactly ``k``), ``"batchtopk"`` and
    ``"matryoshka"`` (``k`` on average). `None`: :func:`scsae.tl.sae` selects it on the
    held-out cells among ``min(16, n_dims // 2)`` and the powers of two below it (the
    ``k`` whose held-out FVU is lowest relative to a rank-``k`` PCA's, recorded in
    ``params['k_selection']``); the model class takes ``min(16, n_dims // 2)``. With
    ``k`` near the input dimension the SAE could reconstruct without being sparse
    (``k >= n_dims`` is refused).
architecture
    Name of the SAE architecture: ``"topk"``, ``"batchtopk"``, ``"matryoshka"``
    (BatchTopK whose nested prefixes of features must reconstruct alone: coarse
    features first), ``"relu"`` (ReLU + decoder-norm-weighted L1) or
    ``"jumprelu"`` (L0 through a straight-through estimator). See
    :data:`scsae.models.ARCHITECTURES`.
sparsity_coefficient
    Weight of the L1 (``"relu"``) or L0 (``"jumprelu"``) penalty; ignored by the
    TopK variants. `None` uses the architecture's default."""

DOC_TRAIN = """\
max_epochs
    Passes over the training cells. `None` chooses enough epochs for about 3,000
    optimiser steps (at least one epoch, at most 1,000): small data sets need many
    passes, atlases one or two.
batch_size
    Cells per optimiser step. `None` uses ``n_train // 8`` clipped to 32-4096, so
    that small data sets still get several steps per epoch and large ones use
    efficient batches.
lr
    Adam learning rate. `None` scales it with the dictionary size,
    ``6e-4 / sqrt(n_features / 2**14)``, capped at ``1e-2`` (wider dictionaries need
    smaller steps).
train_size
    Fraction of cells used for training; the rest (seeded by ``random_state``) is
    held out: the headline metrics are measured on it and, by default, model
    selection runs on it. ``1.0`` holds out nothing (a warning says the metrics are
    then in-sample).
early_stopping
    Model selection on the held-out cells: stop once their FVU has not improved for
    ``early_stopping_patience`` epochs and restore the weights of the best epoch, so
    training never ends worse than its best epoch. `None` (default): whenever cells
    are held out. `False` trains all ``max_epochs`` and keeps the last weights.
random_state
    Seed of the weight initialisation, the split and the shuffling."""


DOC_SHOW = """\
ax
    Axes to draw into.
show
    Show the plot; by default when interactive and no ``ax`` is given.
return_fig
    Return the figure."""

DOC_PLOT_RETURNS = """\
Returns
-------
The axes (or figure with ``return_fig=True``) unless shown."""


def doc_params(**kwds: str) -> Callable[[F], F]:
    """Substitute shared parameter text into a docstring's ``{placeholders}``.

    Continuation lines are indented like the placeholder, so the text reads as
    part of the docstring's Parameters section.
    """

    def decorator(obj: F) -> F:
        doc = obj.__doc__
        if not doc:
            return obj
        indented = {}
        for key, text in kwds.items():
            match = re.search(rf"^([ \t]*)\{{{key}\}}", doc, flags=re.MULTILINE)
            indent = match.group(1) if match else ""
            indented[key] = text.replace("\n", "\n" + indent)
        obj.__doc__ = doc.format(**indented)
        return obj

    return decorator
