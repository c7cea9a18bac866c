"""The progress-bar rule and Lightning's quiet, for every training call."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import pytest

import scsae
from scsae._utils import _progress
from scsae._utils._progress import MIN_CELL_PASSES, show_progress

NOISE = ("GPU available", "TPU available", "litlogger", "LeafSpec", "Epoch")


def rule_in_terminal(cell_passes: float, env: dict[str, str], verbosity: int = 1) -> str:
    """``show_progress`` evaluated by a fresh interpreter whose output is a pseudo-terminal."""
    code = (
        "import scanpy as sc; from scsae._utils._progress import show_progress; "
        f"sc.settings.verbosity = {verbosity}; "
        f"print(show_progress(requested=None, cell_passes={cell_passes}))"
    )
    parent, child = pty.openpty()
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "CI")}
    proc = subprocess.run(
        [sys.executable, "-c", code], stdout=child, stderr=child, env={**clean, **env}, check=True
    )
    os.close(child)
    out = b""
    while True:
        try:
            chunk = os.read(parent, 4096)
        except OSError:  # the terminal closed
            break
        if not chunk:
            break
        out += chunk
    os.close(parent)
    assert proc.returncode == 0
    return out.decode().strip().splitlines()[-1]


def test_rule_in_a_terminal():
    long, short = 10 * MIN_CELL_PASSES, MIN_CELL_PASSES / 10
    assert rule_in_terminal(long, {}) == "True"
    assert rule_in_terminal(short, {}) == "False"  # too short to need a bar
    assert rule_in_terminal(long, {"CI": "true"}) == "False"
    assert rule_in_terminal(long, {}, verbosity=0) == "False"


def test_rule_off_without_terminal_and_under_pytest():
    assert not show_progress(requested=None, cell_passes=1e12)  # pytest runs this
    assert show_progress(requested=True, cell_passes=0)  # the user's choice wins
    assert not show_progress(requested=False, cell_passes=1e12)
    out = subprocess.run(  # a pipe is not a terminal
        [
            sys.executable,
            "-c",
            "from scsae._utils._progress import show_progress as s; "
            "print(s(requested=None, cell_passes=1e12))",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "CI")},
    ).stdout
    assert out.strip() == "False"


@pytest.fixture
def watched(monkeypatch):
    """A person at a terminal and a run long enough: only the pytest guard is left."""
    monkeypatch.setattr(_progress, "interactive", lambda: True)
    monkeypatch.setattr(_progress, "MIN_CELL_PASSES", 0)


def test_tl_sae_prints_nothing_under_pytest(adata, capfd, watched):
    scsae.tl.sae(adata, use_rep="X_emb", max_epochs=2)
    out, err = capfd.readouterr()
    assert not [word for word in NOISE if word in out + err]


def test_samsvae_train_prints_nothing(capfd, watched):
    screen = scsae.datasets.simulate_perturbations(
        n_perturbations=3, n_cells_per_perturbation=20, n_control_cells=40, n_combinations=0
    )
    scsae.SAMSVAE.setup_anndata(screen, perturbation_key="target")
    capfd.readouterr()
    scsae.SAMSVAE(screen, n_latent=4).train(max_epochs=2)
    out, err = capfd.readouterr()
    assert not [word for word in NOISE if word in out + err]


def test_trainer_kwargs_override_the_quiet_defaults(adata, tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    scsae.SAE.setup_anndata(adata, use_rep="X_emb")
    scsae.SAE(adata).train(max_epochs=1, logger=CSVLogger(tmp_path), enable_model_summary=True)
    assert list(tmp_path.rglob("metrics.csv"))
