"""Gene-set resources for :func:`scsae.tl.link_pathways`: a local file, or decoupler online.

A copy of MSigDB Hallmark (v7.5.1, CC BY 4.0) ships in ``_data/`` for machines
without internet; ``_data/MSIGDB_HALLMARK.md`` records its source and attribution.
"""

from __future__ import annotations

from importlib.resources import files
from os import PathLike
from pathlib import Path

import pandas as pd
from scanpy import logging as logg

HALLMARK_VERSION = "7.5.1"
HALLMARK_FILE = files(__package__) / "_data" / f"h.all.v{HALLMARK_VERSION}.symbols.gmt"


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
        downloads the current sets through :func:`decoupler.op.hallmark`; when
        the download fails (no internet), the copy of MSigDB Hallmark v7.5.1
        shipped with scsae is used instead and a warning says so. That copy is
        licensed CC BY 4.0 (Liberzon et al. 2015, Cell Systems; MSigDB, Broad
        Institute); its source and checksum are in the package's
        ``datasets/_data/MSIGDB_HALLMARK.md``.
    organism
        Organism for the download (decoupler translates human symbols; the
        bundled copy is human only).

    Returns
    -------
    Long :class:`pandas.DataFrame` with ``source`` (set), ``target`` (gene symbol)
    and ``weight`` (1), ready for :func:`scsae.tl.link_pathways`.

    Examples
    --------
    >>> net = scsae.datasets.hallmark()  # online, or the bundled copy offline
    >>> net = scsae.datasets.hallmark("h.all.v7.0.symbols.gmt")  # local copy
    """
    if path is not None:
        return _read(path)
    import decoupler as dc

    try:
        net = dc.op.hallmark(organism=organism)
    except OSError as err:  # requests' and urllib's connection errors are OSErrors
        if organism != "human":
            msg = f"Could not download the Hallmark sets ({err}); pass path= a local GMT file for {organism!r}."
            raise ConnectionError(msg) from err
        logg.warning(
            f"could not download the Hallmark sets ({type(err).__name__}); using the copy of "
            f"MSigDB Hallmark v{HALLMARK_VERSION} (CC BY 4.0) shipped with scsae"
        )
        net = _read(HALLMARK_FILE)
        # the names decoupler's online copy uses
        net["source"] = net["source"].str.removeprefix("HALLMARK_")
        return net
    return net[["source", "target"]].drop_duplicates().assign(weight=1.0).reset_index(drop=True)


def progeny(
    path: str | PathLike | None = None, *, organism: str = "human", top: int = 100
) -> pd.DataFrame:
    """PROGENy pathway footprints (14 pathways, signed weights) as a decoupler network.

    Parameters
    ----------
    path
        A local long CSV with ``source``, ``target``, ``weight`` columns. `None`
        downloads the model through :func:`decoupler.op.progeny` (needs internet;
        offline, pass a local copy).
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

    try:
        net = dc.op.progeny(organism=organism, top=top)
    except OSError as err:
        msg = (
            f"Could not download PROGENy ({err}); offline, pass path= a local CSV "
            "with source, target and weight columns."
        )
        raise ConnectionError(msg) from err
    return net[["source", "target", "weight"]]
