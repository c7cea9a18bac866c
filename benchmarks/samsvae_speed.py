"""SAMS-VAE training speed on Papalexi et al. 2021: seconds per epoch, side by side.

Trains SAMS-VAE for a few epochs on the full screen (20,729 cells x 299 genes, batch 128,
5 particles) with 10 and 32 latent dimensions, each with the module's negative binomial
likelihood (log-gamma terms once per cell) and with scvi-tools' ``NegativeBinomial``
evaluated per particle, the previous implementation, and prints seconds per epoch.

Usage::

    python benchmarks/samsvae_speed.py [--epochs 5] [--threads 2] [--path FILE]
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default=str(DEFAULT) if DEFAULT.exists() else None)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
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
