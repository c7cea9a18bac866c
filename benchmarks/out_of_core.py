"""Train one epoch on an embedding that stays on disk; print cells/s and peak RSS.

Usage::

    python benchmarks/out_of_core.py --path /tmp/scsae_emb.h5ad [--n-obs 10000000] [--n-dims 64]

The first run writes a simulated ``n_obs x n_dims`` float32 embedding (in
superposition over a random dictionary) to ``--path`` as an h5ad file with the
embedding in ``obsm['X_emb']``, block by block and in a child process, so the
measuring process never holds it. Later runs reuse the file. The embedding
is opened as a dask array over the h5py dataset, put in ``obsm`` and
trained on with :class:`scsae.SAE`, which picks the out-of-core path by itself. Never write the file into the repository.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time
from pathlib import Path

import numpy as np

BLOCK = 1 << 16


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_embedding(path: str, n_obs: int, n_dims: int, n_true: int, seed: int) -> None:
    """Write an h5ad with ``obsm['X_emb']`` (chunked, float32), block by block."""
    import anndata as ad
    import h5py
    import pandas as pd

    names = pd.Index(np.arange(n_obs).astype(str), name=None)
    ad.AnnData(obs=pd.DataFrame(index=names)).write_h5ad(path)
    del names
    rng = np.random.default_rng(seed)
    dictionary = rng.standard_normal((n_true, n_dims)).astype(np.float32)
    dictionary /= np.linalg.norm(dictionary, axis=1, keepdims=True)
    with h5py.File(path, "a") as f:
        obsm = f["obsm"]
        ds = obsm.create_dataset(
            "X_emb", shape=(n_obs, n_dims), dtype="float32", chunks=(BLOCK // 4, n_dims)
        )
        ds.attrs["encoding-type"] = "array"
        ds.attrs["encoding-version"] = "0.2.0"
        for start in range(0, n_obs, BLOCK):
            n = min(BLOCK, n_obs - start)
            active = rng.integers(0, n_true, size=(n, 8))
            magnitude = rng.exponential(1.0, size=(n, 8)).astype(np.float32)
            block = np.einsum("nk,nkd->nd", magnitude, dictionary[active])
            block += 0.05 * rng.standard_normal((n, n_dims)).astype(np.float32)
            ds[start : start + n] = block


def atlas_anndata(emb):
    """AnnData around an on-disk embedding, with obs names that cost little memory.

    AnnData needs one name per cell. As Python strings 10M names take ~0.6 GiB,
    as an Arrow string index 0.14 GiB. anndata's uniqueness check on that
    index builds a hash table of Python objects (+0.9 GiB), so it is skipped
    here: the names are unique by construction. An atlas read from disk can
    keep its names the same way (``pd.Index(..., dtype="string[pyarrow]")``).
    """
    import anndata as ad
    import pandas as pd
    import pyarrow as pa

    # cast block by block: an int64 -> string cast of 10M at once peaks at +0.3 GiB
    blocks = [
        pa.array(np.arange(start, min(start + BLOCK * 16, emb.shape[0]))).cast(pa.string())
        for start in range(0, emb.shape[0], BLOCK * 16)
    ]
    # one contiguous array: anndata handles a chunked index less frugally
    names = pa.chunked_array(blocks, pa.string()).combine_chunks()
    del blocks
    names = pd.Index(pd.arrays.ArrowStringArray(names))
    with ad.settings.override(check_uniqueness=False):
        return ad.AnnData(obs=pd.DataFrame(index=names), obsm={"X_emb": emb})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--path", required=True, help="h5ad file to create or reuse (not in the repo)"
    )
    parser.add_argument("--n-obs", type=int, default=10_000_000)
    parser.add_argument("--n-dims", type=int, default=64)
    parser.add_argument("--n-features", type=int, default=1024)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()

    path = Path(args.path)
    if not path.exists():
        start = time.perf_counter()
        child = mp.get_context("spawn").Process(
            target=write_embedding, args=(str(path), args.n_obs, args.n_dims, 256, 0)
        )
        child.start()
        child.join()
        if child.exitcode:
            raise SystemExit(child.exitcode)
        print(f"wrote {path} in {time.perf_counter() - start:.0f} s")

    import dask.array as da
    import h5py
    import torch

    import scsae

    torch.set_num_threads(args.threads)
    base = peak_rss_mib()
    # the embedding stays on disk: a dask array over the h5py dataset in obsm
    dataset = h5py.File(path, "r")["obsm/X_emb"]
    emb = da.from_array(dataset, chunks=(BLOCK, dataset.shape[1]))
    adata = atlas_anndata(emb)
    with_adata = peak_rss_mib()
    size_gib = emb.shape[0] * emb.shape[1] * 4 / 2**30
    scsae.SAE.setup_anndata(adata, use_rep="X_emb")
    model = scsae.SAE(adata, n_features=args.n_features, k=args.k)
    start = time.perf_counter()
    model.train(
        max_epochs=1,
        batch_size=args.batch_size,
        train_size=1.0,
        enable_progress_bar=False,
        accelerator="cpu",
    )
    train_s = time.perf_counter() - start
    fit_cells = model.train_params_["n_train"]
    train_peak = peak_rss_mib()
    start = time.perf_counter()
    metrics = model.get_metrics()
    encode_s = time.perf_counter() - start
    print(f"machine: {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    print(
        f"embedding: {emb.shape[0]:,} x {emb.shape[1]} float32 on disk = {size_gib:.2f} GiB ({path})"
    )
    print(
        f"SAE: {args.n_features} features, k={args.k}, batch {args.batch_size}, 1 epoch, "
        f"kernel {model.train_params_['kernel']}, out_of_core={model.train_params_['out_of_core']}"
    )
    print(
        f"train(): {train_s:8.1f} s  {fit_cells / train_s:12,.0f} cells/s "
        "(incl. NaN check, normalisation pass and median sample read)"
    )
    print(f"metrics pass: {encode_s:8.1f} s  {emb.shape[0] / encode_s:12,.0f} cells/s")
    print(
        f"FVU after one epoch (training cells): {metrics['train_fvu']:.3f}, dead fraction {metrics['train_dead_fraction']:.3f}"
    )
    print(
        f"peak RSS: {train_peak:,.0f} MiB after training, {peak_rss_mib():,.0f} MiB after the "
        f"metrics pass; imports alone {base:,.0f} MiB, + AnnData with {emb.shape[0]:,} obs names "
        f"{with_adata:,.0f} MiB; scsae training added {train_peak - with_adata:,.0f} MiB; "
        "budget 1.5 GB = 1,430 MiB"
    )


if __name__ == "__main__":
    main()
