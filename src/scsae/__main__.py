"""Command line: ``scsae demo`` trains an SAE on scanpy's bundled PBMC data."""

from __future__ import annotations

import argparse
import time


def demo(*, architecture: str = "topk", progress_bar: bool | None = None) -> dict[str, float]:
    """Train the default SAE on ``pbmc68k_reduced``'s ``X_pca`` and print its metrics.

    ``progress_bar=None`` follows the package's rule (a bar in a terminal for long runs).
    """
    import scanpy as sc

    from . import tl

    adata = sc.datasets.pbmc68k_reduced()
    print(f"pbmc68k_reduced: {adata.n_obs} cells, X_pca {adata.obsm['X_pca'].shape[1]} dims")
    start = time.perf_counter()
    tl.sae(adata, use_rep="X_pca", architecture=architecture, enable_progress_bar=progress_bar)
    seconds = time.perf_counter() - start
    result = adata.uns["X_sae"]
    params, metrics = result["params"], result["metrics"]
    print(
        f"SAE {params['architecture']}: {params['n_features']} features, k={params['k']}, "
        f"{params['epochs_trained']} epochs in {seconds:.1f} s"
    )
    from .tl._sae import describe_metrics

    print(describe_metrics(metrics))
    for name, value in metrics.items():
        print(f"  {name:<20} {value:.4f}")
    print(f"gene loadings: adata.varm['X_sae_loadings'] {adata.varm['X_sae_loadings'].shape}")
    return metrics


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``scsae`` console command."""
    parser = argparse.ArgumentParser(
        prog="scsae", description="Sparse autoencoders for single-cell data."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo_parser = sub.add_parser(
        "demo", help="train an SAE on scanpy's bundled pbmc68k_reduced and print metrics"
    )
    demo_parser.add_argument("--architecture", default="topk")
    demo_parser.add_argument("--progress-bar", action=argparse.BooleanOptionalAction)
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo(architecture=args.architecture, progress_bar=args.progress_bar)


if __name__ == "__main__":
    main()
