"""Train one epoch on a large simulated embedding; print cells/s and peak memory.

Usage: ``python benchmarks/sae_train_speed.py [--n-obs 1000000] [--n-dims 64]``
(peak memory is also measurable with ``/usr/bin/time -v``). The embedding is
held once, as float32; batches are read from it without copies of the whole.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from anndata import AnnData

import scsae


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-obs", type=int, default=1_000_000)
    parser.add_argument("--n-dims", type=int, default=64)
    parser.add_argument("--expansion-factor", type=int, default=16)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=4096)
    args = parser.parse_args()

    base = peak_rss_mb()
    adata = scsae.datasets.simulate_superposition(
        args.n_obs, args.n_dims, args.n_dims * 4, n_active=args.k // 2, random_state=0
    )
    embedding = adata.obsm["X_emb"]
    emb_mb = embedding.nbytes / 2**20
    data_peak = peak_rss_mb()
    # keep only the embedding: the benchmark measures training, not the simulator's extras
    adata = AnnData(obs=adata.obs[[]], obsm={"X_emb": embedding})
    scsae.SAE.setup_anndata(adata, use_rep="X_emb")
    model = scsae.SAE(adata, expansion_factor=args.expansion_factor, k=args.k)
    start = time.perf_counter()
    model.train(max_epochs=1, batch_size=args.batch_size, train_size=1.0, enable_progress_bar=False)
    seconds = time.perf_counter() - start
    train_peak = peak_rss_mb()
    start = time.perf_counter()
    acts, metrics, _ = model.transform()
    encode_seconds = time.perf_counter() - start
    print(f"machine: {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    print(
        f"embedding: {args.n_obs:,} x {args.n_dims} float32 = {emb_mb:,.0f} MiB (dtype {embedding.dtype})"
    )
    print(
        f"SAE: {model.module.config.n_features} features, k={args.k}, batch {args.batch_size}, 1 epoch"
    )
    print(f"training:  {seconds:7.1f} s  {args.n_obs / seconds:12,.0f} cells/s")
    print(
        f"encoding:  {encode_seconds:7.1f} s  {args.n_obs / encode_seconds:12,.0f} cells/s (activations {acts.nnz:,} nnz)"
    )
    print(
        f"FVU after one epoch (training cells): {metrics['train_fvu']:.3f}, dead fraction {metrics['train_dead_fraction']:.3f}"
    )
    print(
        f"peak RSS: {train_peak:,.0f} MiB (interpreter + libraries {base:,.0f} MiB; after simulating "
        f"{data_peak:,.0f} MiB); training added {train_peak - data_peak:,.0f} MiB over the data"
    )
    print(f"final peak RSS incl. CSR activations: {peak_rss_mb():,.0f} MiB")


if __name__ == "__main__":
    main()
