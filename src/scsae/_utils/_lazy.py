"""Lazy namespaces: ``import scsae`` stays fast; a name's module loads on first use.

Each namespace ``__init__`` keeps one table ``{public name: module}``; adding an
export is one line in that table. A target ``"._sae"`` means ``from ._sae import
name``; ``".models:SparseAutoencoder"`` imports another name under this one. Names in
``submodules`` are subpackages, imported whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib import import_module
from typing import Any


def lazy_exports(
    package: str,
    namespace: dict[str, Any],
    exports: dict[str, str],
    *,
    submodules: Iterable[str] = (),
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """Module-level ``__getattr__``, ``__dir__`` and ``__all__`` for a lazy namespace.

    Parameters
    ----------
    package
        ``__name__`` of the namespace.
    namespace
        Its ``globals()``; a loaded name is stored there, so later access is plain.
    exports
        Public name -> relative module (``"._sae"``) or ``"module:attribute"``.
    submodules
        Subpackages (``"tl"``) imported whole on first access.
    """
    submodules = tuple(submodules)
    public = sorted([*exports, *submodules])

    def __getattr__(name: str) -> Any:
        if name in submodules:
            value = import_module(f".{name}", package)
        elif name in exports:
            module, _, attribute = exports[name].partition(":")
            value = getattr(import_module(module, package), attribute or name)
        else:
            msg = f"module {package!r} has no attribute {name!r}"
            raise AttributeError(msg)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:  # what tab completion offers: the public names
        return sorted({*public, *(name for name in namespace if name.startswith("__"))})

    return __getattr__, __dir__, public
