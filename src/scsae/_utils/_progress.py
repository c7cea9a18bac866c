"""One rule for progress bars and Lightning's chatter in every training call.

A bar is shown when nobody asked either way, the session is interactive (a
terminal or Jupyter), it is not a test or CI run, scanpy's verbosity is above 0,
and the run is long enough to need one. Lightning's start-up banners and tips are
silenced inside our calls; its warnings about real problems still show.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

#: Cells seen during training (cells x epochs, or steps x batch size) from which a
#: run shows a bar: ~2e5 for scanpy's 700-cell PBMC demo (seconds), ~1e7 for 200,000 cells.
MIN_CELL_PASSES = 1_000_000

DOC_PROGRESS_BAR = """\
enable_progress_bar
    Show Lightning's progress bar. `None` (default): only when the session is
    interactive (a terminal or Jupyter), not under pytest or CI (``CI`` set),
    with :attr:`scanpy.settings.verbosity` above 0, and for runs that see at least
    a million cells in total (cells x epochs)."""

# Lightning messages that are advice for its own users, not news about this run
_NOISE = (
    ".*does not have many workers.*",
    ".*smaller than the logging interval.*",
    ".*LeafSpec.*",
    ".*no `val_dataloader`.*",
)


def interactive() -> bool:
    """A person is watching: Jupyter, or a terminal on standard error or output."""
    if "ipykernel" in sys.modules:
        return True
    return any(stream is not None and stream.isatty() for stream in (sys.stderr, sys.stdout))


def show_progress(*, requested: bool | None, cell_passes: float) -> bool:
    """Whether a training call shows a progress bar.

    Parameters
    ----------
    requested
        The user's ``enable_progress_bar``; `True`/`False` win, `None` applies the rule.
    cell_passes
        Cells the run will see in total (cells per epoch x epochs).
    """
    if requested is not None:
        return bool(requested)
    if os.environ.get("PYTEST_CURRENT_TEST") or os.environ.get("CI"):
        return False
    from scanpy import settings

    if int(settings.verbosity) == 0:
        return False
    return interactive() and cell_passes >= MIN_CELL_PASSES


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence Lightning's banners ("GPU available", tips) and advice warnings inside a call."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for message in _NOISE:
                warnings.filterwarnings("ignore", message=message)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
