"""Print the wall time and peak memory of every rule of a finished run.

Reads the Snakemake ``benchmark:`` files (``{outputs}/benchmarks/**/*.tsv``) that each rule
writes, so the figures are the pipeline's own measurements. Jobs of the rules run once per
model, task, partition and seed (``train/``, ``evaluate/``, ``general/``, ``judge/``) are
summed per rule, with their count and slowest job:

    ./with-venv python benchmarks/rule_times.py [outputs/benchmarks] [--jobs]

``--jobs`` lists every job instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

from workload import machine

from pgrpo.manifest import read_benchmarks


def per_rule(rows: list[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """Jobs in a folder (``train/...``) summed into one row ``train (n jobs, slowest m min)``."""
    groups: dict[str, list[tuple[float, float]]] = {}
    for job, seconds, rss in rows:
        groups.setdefault(job.split("/")[0], []).append((seconds, rss))
    out = []
    for name, jobs in groups.items():
        if len(jobs) > 1:
            name = f"{name} ({len(jobs)} jobs, slowest {max(s for s, _ in jobs) / 60:.1f} min)"
        out.append((name, sum(s for s, _ in jobs), max(r for _, r in jobs)))
    return out


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--jobs"]
    folder = Path(args[0] if args else "outputs/benchmarks")
    rows = read_benchmarks(folder)
    if not rows:
        sys.exit(f"error: {folder}: no benchmark files (run snakemake first)")
    print(f"machine: {machine()}")
    print("| rule | wall time | peak memory |")
    print("|---|---:|---:|")
    for rule, seconds, rss in rows if "--jobs" in sys.argv else per_rule(rows):
        print(f"| {rule} | {seconds / 60:.1f} min | {rss / 1024:.2f} GB |")
    total = sum(seconds for _, seconds, _ in rows)
    peak = max(rss for *_, rss in rows)
    print(f"| **sum of rules** | **{total / 60:.1f} min** | max {peak / 1024:.2f} GB |")


if __name__ == "__main__":
    main()
