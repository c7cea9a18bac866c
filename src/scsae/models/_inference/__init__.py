"""Sparse inference over a fixed dictionary: one registry, one file per strategy.

A strategy turns normalised inputs into feature activations for a trained
:class:`~scsae.models.SAEModule` (its decoder is the dictionary). The SAE's
own encoder is the ``"amortized"`` strategy. Strategies that learn something
of their own (e.g. an unrolled encoder) do it in :meth:`Inference.train`,
through the package's one training path (:mod:`scsae.models._training`).
"""

from ._amortized import Amortized
from ._base import INFERENCE, Inference, get_inference, register
from ._ista import FISTA, ISTA
from ._ito import ITO
from ._lista import LISTA
from ._omp import OMP, MatchingPursuit

__all__ = [
    "FISTA",
    "INFERENCE",
    "ISTA",
    "ITO",
    "LISTA",
    "OMP",
    "Amortized",
    "Inference",
    "MatchingPursuit",
    "get_inference",
    "register",
]
