"""Perturbation labels -> dosage matrix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from anndata import AnnData
from scanpy import logging as logg

from .._utils._docs import doc_params
from .._utils._perturbation import DOC_PERTURBATION, dosage_matrix


@doc_params(perturbation=DOC_PERTURBATION)
def perturbation_dosage(
    adata: AnnData,
    *,
    perturbation_key: str = "target",
    control: str | Sequence[str] = "non-targeting",
    delimiter: str = "+",
    perturbations: Sequence[str] | None = None,
    key_added: str = "perturbation_dosage",
    copy: bool = False,
) -> AnnData | None:
    """Turn a perturbation column (``"A"``, ``"A+B"``, controls) into a dosage matrix.

    Row ``i`` counts how often each target appears in cell ``i``'s label, so
    single perturbations are one-hot, combinations multi-hot and controls zero.
    This is the ``d`` of additive perturbation models such as
    :class:`~scsae.models.SAMSVAE`. On any error ``adata`` is left unchanged.

    Parameters
    ----------
    adata
        Annotated data matrix.
    {perturbation}
    perturbations
        Known perturbation names, in column order. `None` uses the sorted targets
        found in the labels; given, any other target raises a :class:`ValueError`
        (use it to build test data aligned with a training set).
    key_added
        Key of the outputs in ``adata.obsm`` and ``adata.uns``.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``adata`` (a copy) if ``copy=True``, else `None`; writes

    ``adata.obsm[key_added]``
        :class:`~pandas.DataFrame` cells x perturbations (float32 dosages).
    ``adata.uns[key_added]``
        ``perturbations`` (column names), ``n_cells`` (cells carrying each
        perturbation), ``n_control_cells`` and ``params`` (the arguments above).

    Examples
    --------
    >>> import scsae
    >>> adata = scsae.datasets.simulate_perturbations()
    >>> scsae.pp.perturbation_dosage(adata, perturbation_key="target", control="non-targeting")
    >>> adata.obsm["perturbation_dosage"].sum(0)
    """
    if perturbation_key not in adata.obs:
        msg = f"perturbation_key={perturbation_key!r} is not a column of adata.obs; columns are {list(adata.obs.columns)}."
        raise KeyError(msg)
    start = logg.info(f"building perturbation dosage from adata.obs[{perturbation_key!r}]")
    dosage = dosage_matrix(
        adata.obs[perturbation_key],
        control=control,
        delimiter=delimiter,
        perturbations=perturbations,
        index=adata.obs_names,
    )
    n_cells = (dosage.to_numpy() != 0).sum(0)
    n_control = int((dosage.to_numpy() == 0).all(1).sum())
    if n_control == 0:
        logg.warning(
            f"no control cells (label {control!r}) found in adata.obs[{perturbation_key!r}]."
        )
    adata = adata.copy() if copy else adata
    adata.obsm[key_added] = dosage
    adata.uns[key_added] = {
        "perturbations": np.asarray(dosage.columns, dtype=object).astype(str),
        "n_cells": n_cells.astype(np.int64),
        "n_control_cells": n_control,
        "params": {
            "perturbation_key": perturbation_key,
            "control": control if isinstance(control, str) else list(control),
            "delimiter": delimiter,
        },
    }
    logg.info(
        "    finished",
        time=start,
        deep=f"added {dosage.shape[1]} perturbations\n    'obsm[{key_added!r}]', 'uns[{key_added!r}]'",
    )
    return adata if copy else None
