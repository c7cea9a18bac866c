"""Parse perturbation labels ("A+B", controls) into a dosage matrix; shared by pp and models."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import sparse

DOC_PERTURBATION = """\
perturbation_key
    Column of ``adata.obs`` naming each cell's perturbation: a target name,
    a combination joined by ``delimiter`` (``"IFNGR1+JAK2"``), or a control label.
control
    Label (or labels) of control cells, e.g. ``"non-targeting"``; control cells get
    an all-zero dosage row, and control labels inside a combination add nothing.
delimiter
    Separator of the targets of a combination. A target listed twice gets dosage 2."""


def _as_controls(control: str | Sequence[str] | None) -> set[str]:
    if control is None:
        return set()
    if isinstance(control, str):
        return {control}
    return {str(c) for c in control}


def split_labels(
    labels: Iterable,
    *,
    control: str | Sequence[str] | None,
    delimiter: str,
) -> list[list[str]]:
    """Components of every label (``[]`` for controls).

    Raises
    ------
    ValueError
        If a label is missing or empty, or a combination has an empty component
        (``"A+"``, ``"A++B"``).
    """
    if not delimiter:
        msg = "delimiter must be a non-empty string such as '+'."
        raise ValueError(msg)
    controls = _as_controls(control)
    labels = pd.Series(list(labels), dtype=object)
    missing = labels.isna().to_numpy() | (labels.astype(str).str.strip() == "").to_numpy()
    if missing.any():
        where = np.flatnonzero(missing)
        msg = (
            f"{missing.sum()} cells have a missing or empty perturbation label (first at positions "
            f"{where[:5].tolist()}); label controls as {sorted(controls) or 'a control label'} instead."
        )
        raise ValueError(msg)
    parsed: dict[str, list[str]] = {}
    for label in pd.unique(labels.astype(str)):
        if label.strip() in controls:
            parsed[label] = []
            continue
        parts = [p.strip() for p in label.split(delimiter)]
        if any(p == "" for p in parts):
            msg = (
                f"Perturbation label {label!r} has an empty component when split on {delimiter!r}."
            )
            raise ValueError(msg)
        parsed[label] = [p for p in parts if p not in controls]
    return [parsed[str(label)] for label in labels]


def check_controls(
    labels: Iterable, *, control: str | Sequence[str] | None, perturbation_key: str
) -> None:
    """Raise a :class:`ValueError` listing the labels when no cell carries a control label.

    A control label that matches no cell would silently leave a model without
    unperturbed cells (every label would become a perturbation).
    """
    controls = _as_controls(control)
    found = pd.unique(pd.Series(list(labels), dtype=object).astype(str).str.strip())
    if controls and not controls & set(found):
        shown = ", ".join(sorted(found)[:50]) + (" ..." if len(found) > 50 else "")
        msg = (
            f"No cell of adata.obs[{perturbation_key!r}] has the control label "
            f"{sorted(controls)}; its labels are: {shown}. Pass control= one of them."
        )
        raise ValueError(msg)


def dosage_matrix(
    labels: Iterable,
    *,
    control: str | Sequence[str] | None = "non-targeting",
    delimiter: str = "+",
    perturbations: Sequence[str] | None = None,
    index: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Cells x perturbations dosage (float32 DataFrame) from labels such as ``"A+B"``.

    Parameters
    ----------
    labels
        One label per cell.
    control
        Control label(s); their rows are all zero.
    delimiter
        Separator of combined targets.
    perturbations
        Known perturbation names (columns, in this order). `None` uses the sorted
        targets found in ``labels``. A target not in this list raises an error.
    index
        Row names (``adata.obs_names``).

    Raises
    ------
    ValueError
        For missing/empty labels, empty components, or targets not in ``perturbations``.
    """
    components = split_labels(labels, control=control, delimiter=delimiter)
    found = sorted({c for comp in components for c in comp})
    if perturbations is None:
        names = found
    else:
        names = [str(p) for p in perturbations]
        if len(set(names)) != len(names):
            msg = "perturbations contains duplicated names."
            raise ValueError(msg)
        unknown = sorted(set(found) - set(names))
        if unknown:
            shown = ", ".join(names[:50]) + (" ..." if len(names) > 50 else "")
            msg = f"Unknown perturbation(s) {unknown}; the known perturbations are: {shown}."
            raise ValueError(msg)
    column = {name: j for j, name in enumerate(names)}
    dosage = np.zeros((len(components), len(names)), dtype=np.float32)
    for i, comp in enumerate(components):
        for name in comp:
            dosage[i, column[name]] += 1.0
    return pd.DataFrame(dosage, index=None if index is None else pd.Index(index), columns=names)


def log_normalize(counts: np.ndarray, *, target_sum: float = 1e4) -> np.ndarray:
    """``log2(counts / library * target_sum + 1)`` per row (dense float64)."""
    counts = counts.toarray() if sparse.issparse(counts) else np.asarray(counts)
    counts = counts.astype(np.float64)
    library = counts.sum(1, keepdims=True)
    return np.log2(counts / np.maximum(library, 1e-12) * target_sum + 1)
