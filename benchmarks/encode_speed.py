"""Inference vs training speed per cell: one epoch of ``train`` against ``transform``.

Usage::

    python benchmarks/encode_speed.py [--n-obs 1000000] [--before-src ../main/src]

Trains the default TopK SAE (1,024 features, k = 16, batch 4,096) for one
epoch on a ``simulate_superposition`` embedding (64 dims), then times
``transform`` (activations, metrics, frequencies in one pass) and
``get_feature_activations``. With ``--before-src`` the same runs with
another checkout's code, interleaved round by round in fresh processes,
so that before and after share the machine's load.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time


def run(src: str | None, args: argparse.Namespace, out: mp.Queue) -> None:
    if src:
        sys.path.insert(0, src)
    import warnings

    warnings.filterwarnings("ignore")
    import torch

    import scsae

    torch.set_num_threads(args.threads)
    adata = scsae.datasets.simulate_superposition(args.n_obs, 64, 256, n_active=8, random_state=0)
    scsae.SAE.setup_anndata(adata, use_rep="X_emb")
    model = scsae.SAE(adata, n_features=args.n_features, k=16)
    start = time.perf_counter()
    model.train(max_epochs=1, batch_size=4096, train_size=0.9, enable_progress_bar=False)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    acts, metrics, _ = model.transform()
    transform_s = time.perf_counter() - start
    start = time.perf_counter()
    model.get_feature_activations()
    activations_s = time.perf_counter() - start
    out.put(
        {
            "code": src or scsae.__file__,
            "train s": train_s,
            "transform s": transform_s,
            "activations s": activations_s,
            "train/transform per cell": (train_s / (0.9 * args.n_obs)) / (transform_s / args.n_obs),
            "heldout fvu": metrics["fvu"],
            "dead": metrics["train_dead_fraction"],
            "nnz": acts.nnz,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-obs", type=int, default=1_000_000)
    parser.add_argument("--n-features", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--before-src", default=None)
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    codes = [None] + ([args.before_src] if args.before_src else [])
    for _ in range(args.repeats):
        for src in codes:
            queue = ctx.Queue()
            proc = ctx.Process(target=run, args=(src, args, queue))
            proc.start()
            proc.join()
            row = queue.get() if not queue.empty() else {"code": src, "crashed": proc.exitcode}
            print(
                "  ".join(
                    f"{k}: {v:.3g}" if isinstance(v, float) else f"{k}: {v}" for k, v in row.items()
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
