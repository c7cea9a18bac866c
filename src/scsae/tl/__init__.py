"""Tools: scanpy-style functions that write results into AnnData."""

from ._sae import sae

__all__ = ["sae"]
