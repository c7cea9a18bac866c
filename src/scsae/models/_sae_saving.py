"""The SAE's registry field, its scvi-tools save files, and the previous release's format.

A saved :class:`~scsae.models.SparseAutoencoder` is a directory holding
``model.pt`` in the scvi-tools layout: ``model_state_dict`` (the module's
weights and buffers), ``var_names`` and ``attr_dict`` (the AnnData registry,
the init parameters and every model attribute ending in ``_``). scsae 0.2
wrote its own layout into the same file name (keys ``class``, ``version``,
``setup``, ``state_dict``...); :func:`legacy_to_scvi` turns it into the
scvi-tools one, without data.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from packaging.version import Version
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data._constants import _MODEL_NAME_KEY, _SETUP_ARGS_KEY, _SETUP_METHOD_NAME
from scvi.data.fields import LayerField, ObsmField
from scvi.model.base._constants import SAVE_KEYS

#: the keys of the ``init_params_`` of scvi-tools that are named arguments of the SAE
INIT_ARGUMENTS = (
    "n_features",
    "expansion_factor",
    "k",
    "architecture",
    "sparsity_coefficient",
    "random_state",
)


def scsae_version() -> str:
    """The installed scsae version (read from the package metadata, not the package root)."""
    try:
        return version("scsae")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"


def input_field(use_rep: str | None, layer: str | None) -> ObsmField | LayerField:
    """The registry field of the model's input: an ``obsm`` key, ``X`` or a layer.

    Data are neither checked as counts nor rewritten (scvi-tools would make a
    Fortran-ordered ``obsm`` C-contiguous in place: a second copy of the embedding).
    """
    if layer is None and use_rep not in (None, "X"):
        return ObsmField(REGISTRY_KEYS.X_KEY, use_rep, correct_data_format=False)
    return LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=False, correct_data_format=False)


def registry_n_dims(registry: dict[str, Any]) -> int:
    """Width of the registered input."""
    state = registry["field_registries"][REGISTRY_KEYS.X_KEY]["state_registry"]
    return len(state["column_names"])


def uses_var_names(registry: dict[str, Any]) -> bool:
    """Whether the input is ``X`` or a layer, whose columns are the genes (``var_names``)."""
    data = registry["field_registries"][REGISTRY_KEYS.X_KEY]["data_registry"]
    return data["attr_name"] != "obsm"


def check_version(saved: str | None, path: Path) -> None:
    """ValueError for a model saved by a newer scsae than this one."""
    current = scsae_version()
    if saved is not None and Version(saved) > Version(current):
        msg = f"{path} was saved by scsae {saved}, newer than this {current}; upgrade scsae."
        raise ValueError(msg)


def read_saved(dir_path: str | Path, prefix: str | None) -> tuple[dict[str, Any], Path]:
    """The content of ``<dir_path>/<prefix>model.pt`` and its path."""
    path = Path(dir_path) / f"{prefix or ''}{SAVE_KEYS.MODEL_FNAME}"
    if not path.exists():
        msg = f"No saved model at {path}."
        raise FileNotFoundError(msg)
    return torch.load(path, map_location="cpu", weights_only=False), path


def is_legacy(saved: dict[str, Any]) -> bool:
    """Whether a ``model.pt`` holds scsae 0.2's own layout."""
    return SAVE_KEYS.ATTR_DICT_KEY not in saved and "state_dict" in saved and "class" in saved


def registry_without_data(
    model_name: str, use_rep: str | None, layer: str | None, n_dims: int
) -> dict[str, Any]:
    """The registry :meth:`setup_anndata` would write for an input of ``n_dims`` columns.

    Made by registering the field on a one-cell stand-in, so its layout is
    scvi-tools' own. For ``X`` or a layer the gene names are not known: the
    columns are named ``"0"``... and the saved ``var_names`` are `None`.
    """
    zeros = np.zeros((1, n_dims), dtype=np.float32)
    obs = pd.DataFrame(index=["0"])
    var = pd.DataFrame(index=[str(i) for i in range(n_dims)])
    if layer is None and use_rep not in (None, "X"):
        stand_in = AnnData(obs=obs, obsm={use_rep: zeros})
    else:
        stand_in = AnnData(
            X=zeros, obs=obs, var=var, layers={} if layer is None else {layer: zeros}
        )
    manager = AnnDataManager(
        fields=[input_field(use_rep, layer)],
        setup_method_args={
            _MODEL_NAME_KEY: model_name,
            _SETUP_METHOD_NAME: "setup_anndata",
            _SETUP_ARGS_KEY: {"use_rep": use_rep, "layer": layer, "check": True},
        },
    )
    manager.register_fields(stand_in)
    return manager.registry


def legacy_to_scvi(saved: dict[str, Any], model_name: str, path: Path) -> dict[str, Any]:
    """The content of a ``model.pt`` of scsae 0.2, in the scvi-tools layout (no data needed)."""
    if saved.get("class") != model_name:
        msg = f"{path} holds a {saved.get('class')!r}, not a {model_name}."
        raise ValueError(msg)
    check_version(saved.get("version"), path)
    setup = saved["setup"]
    init = dict(saved["init_params"])
    named = {key: init.pop(key) for key in INIT_ARGUMENTS if key in init}
    attrs = {
        "registry_": registry_without_data(
            model_name, setup["use_rep"], setup["layer"], int(setup["n_dims"])
        ),
        "init_params_": {"non_kwargs": named, "kwargs": {"config_kwargs": init}},
        "train_params_": saved["train_params"],
        "history_": {key: pd.DataFrame({key: values}) for key, values in saved["history"].items()},
        "is_trained_": saved["is_trained"],
        "heldout_mask_": saved.get("heldout_mask"),
        "baseline_": saved.get("baseline"),
        "config_": saved["config"],
        "scsae_version_": saved["version"],
    }
    return {
        SAVE_KEYS.MODEL_STATE_DICT_KEY: saved["state_dict"],
        SAVE_KEYS.VAR_NAMES_KEY: None,
        SAVE_KEYS.ATTR_DICT_KEY: attrs,
    }
