"""Registry and base class of inference strategies."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from torch import Tensor

    from .._sae_module import SAEModule

INFERENCE: dict[str, type[Inference]] = {}


def register(cls: type[Inference]) -> type[Inference]:
    """Add a strategy class to :data:`INFERENCE` under ``cls.name``."""
    INFERENCE[cls.name] = cls
    return cls


def get_inference(name: str, **options: Any) -> Inference:
    """Instantiate a strategy by name; unknown names get the list of known ones."""
    if name not in INFERENCE:
        msg = f"Unknown inference strategy {name!r}; choose one of {sorted(INFERENCE)}."
        raise ValueError(msg)
    return INFERENCE[name](**options)


class Inference:
    """Base class: ``encode(module, x) -> activations`` on normalised inputs.

    Parameters
    ----------
    **options
        Strategy-specific settings (documented on each subclass).
    """

    name: ClassVar[str]
    #: whether :meth:`train` must see training data before :meth:`encode`
    needs_fit: ClassVar[bool] = False

    def __init__(self, **options: Any) -> None:
        if options:
            msg = f"{type(self).__name__} takes no options; got {sorted(options)}."
            raise TypeError(msg)

    def train(self, module: SAEModule, batches: Iterable[Tensor]) -> None:
        """Learn strategy parameters from normalised training batches (default: nothing).

        Strategies that learn train a Lightning module through
        :func:`scsae.models._training.run_training`, the path every model trains on.
        """

    def encode(self, module: SAEModule, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        """Dense activations (mostly zeros), cells x features, in normalised units."""
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """Settings to record in ``uns[key]["params"]``."""
        return {"inference": self.name}
