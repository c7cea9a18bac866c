"""The progress-bar rule on a real-sized run: ``tl.sae`` on 200,000 cells.

Run it under a pseudo-terminal to see the bar, and through a pipe (or under
pytest, or with ``CI`` set) to see none; it prints the rule's decision first:

    script -qc "python benchmarks/progress_bar.py" /tmp/progress.typescript
    python benchmarks/progress_bar.py | cat

``tests/test_progress.py`` tests the same rule (the pytest guard, the terminal
check, the length threshold and scanpy's verbosity) without drawing anything.
"""

from __future__ import annotations

import argparse
import sys
import time

import scsae
from scsae._utils._progress import MIN_CELL_PASSES, interactive, show_progress


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-obs", type=int, default=200_000)
    parser.add_argument("--max-epochs", type=int, default=10)
    args = parser.parse_args()
    adata = scsae.datasets.simulate_superposition(n_obs=args.n_obs, random_state=0)
    batch = min(4096, args.n_obs // 8)  # tl.sae's default batch size at this size
    passes = (int(0.9 * args.n_obs) // batch) * batch * args.max_epochs
    print(
        f"{args.n_obs} cells, {args.max_epochs} epochs: {passes:,} cell passes "
        f"(threshold {MIN_CELL_PASSES:,}); interactive={interactive()}; "
        f"bar={show_progress(requested=None, cell_passes=passes)}",
        flush=True,
    )
    start = time.perf_counter()
    scsae.tl.sae(adata, use_rep="X_emb", max_epochs=args.max_epochs)
    seconds = time.perf_counter() - start
    print(
        f"trained in {seconds:.0f} s; FVU {adata.uns['X_sae']['metrics']['fvu']:.3f}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
