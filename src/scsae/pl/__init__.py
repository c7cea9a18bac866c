"""Plots: read what tl wrote into AnnData (or a model's history) and draw."""

from ._density import feature_density
from ._history import training_history

__all__ = ["feature_density", "training_history"]
