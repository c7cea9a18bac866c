"""Gene-set resources for :func:`scsae.tl.link_pathways`: a local file, or decoupler online."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import pandas as pd


def _read(path: str | PathLike) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        msg = (
            f"{str(path)!r} does not exist; pass the path of a local copy or path=None to download."
        )
        raise FileNotFoundError(msg)
    if path.suffix.lower() == ".csv":
        net = pd.read_csv(path)
    else:
        import decoupler as dc

        net = dc.pp.read_gmt(str(path))
    if "weight" not in net.columns:
        net["weight"] = 1.0
    return (
        net[["source", "target", "weight"]]
        .drop_duplicates(["source", "target"])
        .reset_index(drop=True)
    )


def hallmark(path: str | PathLike | None = None, *, organism: str = "human") -> pd.DataFrame:
    """MSigDB Hallmark gene sets (50 sets) as a decoupler network.

    Parameters
    ----------
    path
        A local GMT file (e.g. ``h.all.v7.0.symbols.gmt`` from MSigDB). `None`
        downloads the current sets through :func:`decoupler.op.hallmark` (needs
        internet).
    organism
        Organism for the download (decoupler translates human symbols).

    Returns
    -------
    Long :class:`pandas.DataFrame` with ``source`` (set), ``target`` (gene symbol)
    and ``weight`` (1), ready for :func:`scsae.tl.link_pathways`.

    Examples
    --------
    >>> net = scsae.datasets.hallmark()  # online
    >>> net = scsae.datasets.hallmark("h.all.v7.0.symbols.gmt")  # local copy
    """
    if path is not None:
        return _read(path)
    import decoupler as dc

    net = dc.op.hallmark(organism=organism)
    return net[["source", "target"]].drop_duplicates().assign(weight=1.0).reset_index(drop=True)


def progeny(
    path: str | PathLike | None = None, *, organism: str = "human", top: int = 100
) -> pd.DataFrame:
    """PROGENy pathway footprints (14 pathways, signed weights) as a decoupler network.

    Parameters
    ----------
    path
        A local long CSV with ``source``, ``target``, ``weight`` columns. `None`
        downloads the model through :func:`decoupler.op.progeny` (needs internet).
    organism
        Organism for the download.
    top
        Footprint genes per pathway for the download.

    Returns
    -------
    Long :class:`pandas.DataFrame` with ``source``, ``target`` and ``weight``.
    """
    if path is not None:
        return _read(path)
    import decoupler as dc

    return dc.op.progeny(organism=organism, top=top)[["source", "target", "weight"]]
