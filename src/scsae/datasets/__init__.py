"""datasets namespace."""

from ._superposition import simulate_superposition

__all__ = ["simulate_superposition"]
