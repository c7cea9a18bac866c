"""The README's quick start runs as written without a network; loaders say how to go offline."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

import scsae

ROOT = Path(__file__).resolve().parents[1]

# loaded before the quick start by the fresh interpreter: every connection fails at once
NO_NETWORK = """
import socket

def _refuse(*args, **kwargs):
    raise OSError("network disabled for this test")

socket.socket.connect = _refuse
socket.socket.connect_ex = _refuse
socket.create_connection = _refuse
socket.getaddrinfo = _refuse
"""


def quick_start() -> str:
    """The first ``python`` block after the README's "Quick start" heading."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1]
    return re.search(r"```python\n(.*?)```", section, flags=re.DOTALL).group(1)


def offline(monkeypatch, function: str) -> None:
    """Make a decoupler download fail as it does on a machine without internet."""
    import decoupler as dc

    def refuse(*args, **kwargs):
        msg = "Failed to establish a new connection"
        raise requests.exceptions.ConnectionError(msg)

    monkeypatch.setattr(dc.op, function, refuse)


def test_readme_quick_start_runs_offline(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(NO_NETWORK)
    (tmp_path / "quick_start.py").write_text(quick_start())
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT / "src")]),
        "MPLBACKEND": "agg",
    }
    proc = subprocess.run(
        [sys.executable, "quick_start.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the one line that says the gene sets came from the bundled copy
    assert proc.stderr.count("shipped with scsae") == 1, proc.stderr[-3000:]
    assert (tmp_path / "pbmc_sae").is_dir()


def test_hallmark_falls_back_to_bundled_copy(monkeypatch):
    from scsae.datasets import _genesets

    offline(monkeypatch, "hallmark")
    said = []
    monkeypatch.setattr(_genesets.logg, "warning", lambda msg, *a, **k: said.append(msg))
    net = scsae.datasets.hallmark()
    assert len(said) == 1
    assert "MSigDB Hallmark v7.5.1" in said[0]
    assert list(net.columns) == ["source", "target", "weight"]
    assert net["source"].nunique() == 50
    assert len(net) == 7321
    assert "TNFA_SIGNALING_VIA_NFKB" in set(net["source"])  # decoupler's names
    assert {"NFKBIA", "JUNB"} <= set(net.loc[net["source"] == "TNFA_SIGNALING_VIA_NFKB", "target"])


def test_bundled_hallmark_carries_attribution():
    from scsae.datasets._genesets import HALLMARK_FILE

    notice = (HALLMARK_FILE.parent / "MSIGDB_HALLMARK.md").read_text()
    assert "CC BY 4.0" in notice
    assert "7.5.1" in notice


def test_offline_errors_name_the_path_argument(monkeypatch):
    offline(monkeypatch, "progeny")
    with pytest.raises(ConnectionError, match="pass path="):
        scsae.datasets.progeny()
    offline(monkeypatch, "hallmark")
    with pytest.raises(ConnectionError, match="pass path="):
        scsae.datasets.hallmark(organism="mouse")  # the bundled copy is human only
