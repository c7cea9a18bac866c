"""Import time of ``scsae`` beside ``scanpy``, measured in the same run.

Each import runs in a fresh interpreter under ``python -X importtime``; the figure
is the sum of the top-level entries (everything the statement imported), the
median of ``--repeats`` runs, interleaved so both see the same machine load.

    python benchmarks/import_time.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

STATEMENTS = {
    "scanpy": "import scanpy",
    "scsae": "import scsae",
    "scsae + tl.sae (first use: scanpy, torch, Lightning)": "import scsae; scsae.tl.sae",
}


def import_seconds(statement: str) -> float:
    """Seconds ``statement`` spends importing, from ``-X importtime``'s top-level entries."""
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    total = 0
    for line in err.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line.split("|")
            if cumulative.strip().isdigit() and not name.startswith("  "):
                total += int(cumulative)
    return total / 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in STATEMENTS}
    for _ in range(args.repeats):
        for name, statement in STATEMENTS.items():
            times[name].append(import_seconds(statement))
    scanpy = statistics.median(times["scanpy"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<55} {median:6.2f} s  ({median / scanpy:4.2f}x scanpy)")


if __name__ == "__main__":
    main()
