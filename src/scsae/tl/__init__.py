"""Tools: scanpy-style functions that write results into AnnData."""

from ._feature_genes import feature_genes
from ._pathways import link_pathways
from ._sae import sae

__all__ = ["feature_genes", "link_pathways", "sae"]
