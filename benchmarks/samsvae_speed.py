"""SAMS-VAE training speed on Papalexi et al. 2021: seconds per epoch, side by side.

Trains SAMS-VAE for a few epochs on the full screen (20,729 cells x 299 genes, batch 128,
5 particles) with 10 and 32 latent dimensions, each with the module's negative binomial
likelihood (log-gamma terms once per cell) and with scvi-tools' ``NegativeBinomial``
evaluated per particle, the previous implementation, and prints seconds per epoch.

With ``--previous SRC`` (the ``src`` folder of an earlier release, e.g. from
``git archive 9219e83 src | tar -x -C /tmp/prev``) it instead times this checkout and that
release with the defaults (32 latent dimensions), alternating runs in subprocesses so that
both see the same machine load, and prints both.

Usage::

    python benchmarks/samsvae_speed.py [--epochs 5] [--threads 2] [--path FILE] [--previous SRC]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import torch
from scvi.distributions import NegativeBinomial

import scsae
from scsae.models._samsvae_module import SAMSVAEModule

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "papalexi2021_sceptredata.h5ad"


def scvi_log_likelihood(self, x, generative_outputs):
    dist = NegativeBinomial(mu=generative_outputs["px_rate"], theta=generative_outputs["theta"])
    return dist.log_prob(x).sum(-1)


def seconds_per_epoch(adata, n_latent: int, epochs: int) -> float:
    data = adata.copy()
    scsae.SAMSVAE.setup_anndata(data, perturbation_key="target", control="non-targeting")
    model = scsae.SAMSVAE(data, n_latent=n_latent)
    model.train(max_epochs=epochs, batch_size=128, train_size=1.0)
    return model.train_params_["seconds_per_epoch"]


def timed_in(src: str, path: str, epochs: int, threads: int) -> float:
    """Seconds per epoch of the scsae found in ``src``, measured in a fresh process."""
    code = (
        "import sys, torch, scsae\n"
        f"torch.set_num_threads({threads})\n"
        f"a = scsae.datasets.papalexi2021({path!r})\n"
        "scsae.SAMSVAE.setup_anndata(a, perturbation_key='target', control='non-targeting')\n"
        "m = scsae.SAMSVAE(a, n_latent=32)\n"
        f"m.train(max_epochs={epochs}, batch_size=128, train_size=1.0)\n"
        "print('S_PER_EPOCH', m.train_params_['seconds_per_epoch'])\n"
    )
    env = {**os.environ, "PYTHONPATH": src}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    return float(
        next(line for line in out.splitlines() if line.startswith("S_PER_EPOCH")).split()[1]
    )


def compare_releases(args: argparse.Namespace) -> None:
    here = str(Path(__file__).resolve().parents[1] / "src")
    times: dict[str, list[float]] = {"this checkout": [], "previous": []}
    for _ in range(2):  # alternate, so both see the same load
        times["this checkout"].append(timed_in(here, args.path, args.epochs, args.threads))
        times["previous"].append(timed_in(args.previous, args.path, args.epochs, args.threads))
    print(f"Papalexi, n_latent=32, batch 128, {args.epochs} epochs, {args.threads} threads")
    for name, values in times.items():
        print(f"{name:14s} s/epoch: " + " / ".join(f"{v:.2f}" for v in values))
    ratio = min(times["previous"]) / min(times["this checkout"])
    print(f"speed ratio previous / this (best of two each): {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default=str(DEFAULT) if DEFAULT.exists() else None)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--previous", default=None, help="src folder of an earlier release")
    args = parser.parse_args()
    if args.previous is not None:
        compare_releases(args)
        return
    torch.set_num_threads(args.threads)
    adata = scsae.datasets.papalexi2021(args.path)
    rows = []
    for n_latent in (10, 32):
        ours = seconds_per_epoch(adata, n_latent, args.epochs)
        with mock.patch.object(SAMSVAEModule, "log_likelihood", scvi_log_likelihood):
            theirs = seconds_per_epoch(adata, n_latent, args.epochs)
        rows.append((n_latent, ours, theirs))
    print(f"\n{adata.n_obs} cells, batch 128, 5 particles, {args.threads} threads")
    print("n_latent  s/epoch (scsae NB)  s/epoch (scvi NB per particle)  speed-up")
    for n_latent, ours, theirs in rows:
        print(f"{n_latent:8d}  {ours:18.2f}  {theirs:30.2f}  {theirs / ours:8.2f}x")


if __name__ == "__main__":
    main()
