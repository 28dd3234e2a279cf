"""Print the wall time and peak memory of every rule of a finished run.

Reads the Snakemake ``benchmark:`` files (``{outputs}/benchmarks/*.tsv``) that each rule
writes, so the figures are the pipeline's own measurements:

    ./with-venv python benchmarks/rule_times.py [outputs/benchmarks]
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from workload import machine


def read_benchmarks(folder: Path) -> list[tuple[str, float, float]]:
    """(rule, wall seconds, peak RSS in MB) per benchmark file, in file-name order."""
    rows = []
    for path in sorted(folder.glob("*.tsv")):
        with open(path, newline="") as f:
            record = next(csv.DictReader(f, delimiter="\t"))
        max_rss = record.get("max_rss", "NA")
        rows.append((path.stem, float(record["s"]), float(max_rss) if max_rss != "NA" else 0.0))
    return rows


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/benchmarks")
    rows = read_benchmarks(folder)
    if not rows:
        sys.exit(f"error: {folder}: no benchmark files (run snakemake first)")
    print(f"machine: {machine()}")
    print("| rule | wall time | peak memory |")
    print("|---|---:|---:|")
    for rule, seconds, rss in rows:
        print(f"| {rule} | {seconds / 60:.1f} min | {rss / 1024:.2f} GB |")
    total = sum(seconds for _, seconds, _ in rows)
    peak = max(rss for *_, rss in rows)
    print(f"| **sum of rules** | **{total / 60:.1f} min** | max {peak / 1024:.2f} GB |")


if __name__ == "__main__":
    main()
