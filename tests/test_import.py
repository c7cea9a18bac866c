"""``import scsae`` is fast: the heavy stack loads only when a function needs it."""

from __future__ import annotations

import subprocess
import sys
from importlib import import_module

import pytest

HEAVY = ["decoupler", "lightning", "matplotlib", "scvi", "torch"]


def loaded_after(code: str) -> list[str]:
    """Heavy packages in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    check = f"{code}; import sys; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, check=True
    ).stdout
    return out.split()


def test_import_loads_no_heavy_stack():
    assert loaded_after("import scsae; scsae.tl; scsae.pl; scsae.models; scsae.__version__") == []


def test_sae_loads_scvi_tools_but_not_decoupler():
    # the SAE is a scvi-tools model (BaseModelClass, TrainRunner): scvi loads with it
    loaded = loaded_after("import scsae; scsae.tl.sae; scsae.SAE")
    assert {"scvi", "lightning", "torch"} <= set(loaded)
    assert "decoupler" not in loaded


@pytest.mark.parametrize(
    "namespace", ["scsae", "scsae.tl", "scsae.pl", "scsae.pp", "scsae.models", "scsae.datasets"]
)
def test_every_export_resolves(namespace):
    module = import_module(namespace)
    for name in module.__all__:
        assert getattr(module, name) is not None
    assert set(module.__all__) <= set(dir(module))


def test_aliases_and_unknown_names():
    import scsae

    assert scsae.SAE is scsae.SparseAutoencoder is scsae.models.SparseAutoencoder
    with pytest.raises(AttributeError, match="has no attribute 'sea'"):
        scsae.tl.sea  # noqa: B018
