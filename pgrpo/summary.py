"""Every method of a task table on one line: overall, worst group and best - worst gap, and
each method's paired differences against the reference method.

    python -m pgrpo.summary results/baselines/tables/table3_reviews.csv

prints the layout of the baselines' tables in docs/results.md: one row per method (the base
model, the reference method, the built-in methods in their order, then any other), the
metric's ``all``, ``worst`` and ``gap`` cells (mean ± 95% interval over seeds), then the
method's differences against the reference method (``<method>-<reference>`` rows, paired by
seed): in bold where the interval excludes 0, with the minimum detectable difference (80%
power) in brackets where it holds 0. A last line counts the difference cells of the metric
(every group, not only these three columns) whose interval excludes 0, against the number 5%
would give by chance.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from pgrpo.io import PgrpoError, run_cli
from pgrpo.methods import BUILTIN, difference, is_difference
from pgrpo.stats import Interval, format_cell
from pgrpo.tables import method_label

COLUMNS = ("all", "worst", "gap")
HEADER = ("all", "worst group", "best − worst gap")


def read_rows(path: Path, metric: str) -> dict[tuple[str, str], dict]:
    """{(method, cluster): row} of ``metric`` in a table CSV (pgrpo.tables' long format)."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise PgrpoError(f"{path}: cannot read the table ({e.strerror})") from None
    needed = {"method", "cluster", "metric", "mean", "ci95", "n_seeds", "mdd"}
    if not rows or not needed <= set(rows[0]):
        missing = ", ".join(sorted(needed - set(rows[0] if rows else {})))
        raise PgrpoError(f"{path}: not a pgrpo table CSV (no column {missing})")
    cells = {(r["method"], r["cluster"]): r for r in rows if r["metric"] == metric}
    if not cells:
        metrics = ", ".join(sorted({r["metric"] for r in rows}))
        raise PgrpoError(f"{path}: no metric {metric!r} (it has {metrics})")
    return cells


def interval(row: dict) -> Interval:
    """A CSV row's cell (an empty ``ci95``: no interval)."""
    return Interval(float(row["mean"]), float(row["ci95"] or "nan"), int(row["n_seeds"]))


def cell(row: dict | None, paired: bool = False) -> str:
    """``0.172 ± 0.097``; a difference signed, in bold when it excludes 0, else with its MDD."""
    if row is None:
        return ""
    value = interval(row)
    text = format_cell(value)
    if not paired:
        return text
    text = ("+" if value.mean >= 0 else "") + text
    if not value.defined:
        return text
    if not value.overlaps_zero():
        return f"**{text}**"
    return f"{text} ({float(row['mdd']):.3f})" if row["mdd"] else text


def summary(path: Path, metric: str = "reward", reference: str = "grpo") -> str:
    cells = read_rows(path, metric)
    methods = list(dict.fromkeys(m for m, _ in cells if not is_difference(m)))
    if reference not in methods:
        raise PgrpoError(f"{path}: no method {reference!r} among {', '.join(methods)}")
    order = ["base", reference, *BUILTIN]  # then any other method, as the table has them
    methods.sort(key=lambda m: order.index(m) if m in order else len(order))
    label = method_label(reference)
    lines = [
        "| method | " + " | ".join([*HEADER, *(f"{h} − {label}" for h in COLUMNS)]) + " |",
        "|---" * (1 + 2 * len(COLUMNS)) + "|",
    ]
    for method in methods:
        paired = difference(method, reference)
        values = [cell(cells.get((method, c))) for c in COLUMNS]
        values += [cell(cells.get((paired, c)), paired=True) for c in COLUMNS]
        lines.append(f"| {method_label(method)} | " + " | ".join(values) + " |")
    diffs = [interval(r) for (m, _), r in cells.items() if is_difference(m)]
    diffs = [d for d in diffs if d.defined]
    excluding = sum(not d.overlaps_zero() for d in diffs)
    lines.append(
        f"\n{excluding} of {len(diffs)} difference cells of {metric} exclude 0 "
        f"(about {0.05 * len(diffs):.1f} would by chance)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("tables", nargs="+", type=Path, help="table CSVs (results/*/tables/*.csv)")
    p.add_argument("--metric", default="reward", help="the metric summarised (default reward)")
    p.add_argument("--reference", default="grpo", help="the method differences are against")
    args = p.parse_args(argv)
    texts = [summary(path, args.metric, args.reference) for path in args.tables]
    for path, text in zip(args.tables, texts, strict=True):
        print(f"{path}\n\n{text}\n")


if __name__ == "__main__":
    run_cli(main)
