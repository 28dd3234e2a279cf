"""Entry point: the published numbers as a reference, and a statistically aware comparison
of a new run against them.

``results/reference.json`` (committed) holds the headline cells of the published tables:
every row whose cluster is ``all`` or ``worst`` (mean, 95% half-width, seeds), keyed
``table/task/model/method/variant/cluster/metric``, with the commit that made them. A run of
the pipeline ends by comparing the tables it has just written with it. For each headline
cell it says:

* ``inside``: whether the new mean lies inside the published 95% interval (a base-model or
  reference-row cell has no interval: whether it is equal to 1e-6);
* ``consistent``: whether the 95% Welch interval of new - published contains 0, using both
  runs' seeds and spreads. This is the test to read. "Inside" ignores the new run's own noise
  (with many seeds a rerun of the same distribution lands inside only about 83% of the time)
  and, with few seeds, the degrees of freedom that pooling both runs gains (with 3 seeds
  each, a rerun 0.95 half-widths away is inside yet not consistent); a rerun of the same
  distribution is consistent 95% of the time.

``dvc metrics diff`` reports the changes of means; this says which of them are noise.

    python -m pgrpo.reference publish --tables results/tables/*.csv \
        --manifest results/manifest.json --out results/reference.json
    python -m pgrpo.reference compare --reference results/reference.json \
        --tables results/tables/*.csv --out results/comparison
    python -m pgrpo.reference power --reference results/reference.json --out power.md

``power`` lists, for every published difference headline cell (each method minus the
reference method: P-GRPO - GRPO), its minimum detectable
difference and the seeds a 95% interval of ``--half-width`` (0.03) would need at its spread.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

from scipy import stats

from pgrpo.io import PgrpoError, read_json, run_cli, write_json, write_text
from pgrpo.methods import is_difference
from pgrpo.stats import (
    Interval,
    minimum_detectable_difference,
    p_value,
    seeds_for_half_width,
    spread,
    standard_error,
)

HEADLINE_CLUSTERS = ("all", "worst")


def headline_cells(tables: list[str | Path]) -> dict[str, dict]:
    """The headline cells of catalogue tables (``.csv``): key -> mean, ci95 (None: no
    interval), n_seeds."""
    cells = {}
    for path in map(Path, tables):
        if not path.is_file():
            raise PgrpoError(f"{path}: file not found")
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        for line, row in enumerate(rows, 2):
            try:
                if row["cluster"] not in HEADLINE_CLUSTERS:
                    continue
                parts = (path.stem, row["task"], row["model"], row["method"],
                         row.get("variant", ""), row["cluster"], row["metric"])  # fmt: skip
                cells["/".join(parts)] = {
                    "mean": float(row["mean"]),
                    "ci95": float(row["ci95"]) if row["ci95"] else None,
                    "n_seeds": int(row["n_seeds"]),
                }
            except (KeyError, TypeError, ValueError) as e:
                raise PgrpoError(
                    f"{path}:{line}: not a catalogue row ({type(e).__name__}: {e})"
                ) from None
    return cells


def _se(cell: dict) -> float:
    """Standard error of a cell's mean (0 without an interval: one deterministic value)."""
    if cell["ci95"] is None or cell["n_seeds"] < 2:
        return 0.0
    return standard_error(Interval(cell["mean"], cell["ci95"], cell["n_seeds"]))


def compare_cell(published: dict, new: dict) -> dict:
    """The comparison of one headline cell (see the module doc)."""
    diff = new["mean"] - published["mean"]
    if published["ci95"] is None:
        inside = abs(diff) <= 1e-6
    else:
        inside = (
            published["mean"] - published["ci95"]
            <= new["mean"]
            <= (published["mean"] + published["ci95"])
        )
    se_p, se_n = _se(published), _se(new)
    se = math.hypot(se_p, se_n)
    if se == 0:
        half = 0.0
        consistent = abs(diff) <= 1e-6
    else:  # Welch-Satterthwaite degrees of freedom
        parts = [(s**2, c["n_seeds"] - 1) for s, c in ((se_p, published), (se_n, new)) if s > 0]
        df = se**4 / sum(v**2 / d for v, d in parts)
        half = float(stats.t.ppf(0.975, df)) * se
        consistent = abs(diff) <= half
    return {"published": published["mean"], "published_ci95": published["ci95"],
            "new": new["mean"], "new_ci95": new["ci95"], "difference": diff,
            "difference_ci95": half, "inside": bool(inside),
            "consistent": bool(consistent)}  # fmt: skip


def compare(reference: dict, tables: list[str | Path]) -> dict:
    """Every published headline cell against the new tables' cell of the same key."""
    new = headline_cells(tables)
    published = reference["cells"]
    cells = {key: compare_cell(published[key], new[key]) for key in published if key in new}
    return {
        "reference_commit": reference.get("commit"),
        "compared": len(cells),
        "inside": sum(c["inside"] for c in cells.values()),
        "consistent": sum(c["consistent"] for c in cells.values()),
        "missing": sorted(set(published) - set(new)),
        "new": sorted(set(new) - set(published)),
        "cells": cells,
    }


def summary_line(result: dict) -> str:
    n = result["compared"]
    return (
        f"{result['consistent']} of {n} headline numbers are consistent with the published run "
        f"(Welch 95%), {result['inside']} of {n} inside its interval; "
        f"{len(result['missing'])} published numbers missing, {len(result['new'])} new"
    )


def to_markdown(result: dict) -> str:
    """The summary, then every cell that is not consistent (the ones to look at)."""
    if result["reference_commit"] is None and not result["compared"]:
        return (f"No published reference to compare with: {len(result['new'])} headline "
                "numbers, all new (publish: `python -m pgrpo.reference publish`).\n")  # fmt: skip
    lines = [f"Comparison with the published run (commit {result['reference_commit']}): "
             + summary_line(result) + ".", ""]  # fmt: skip
    odd = {k: c for k, c in result["cells"].items() if not c["consistent"]}
    if odd:
        lines += ["| cell | published | new | new - published |", "|---|---|---|---|"]
        for key, c in odd.items():
            lines.append(f"| {key} | {_cell(c['published'], c['published_ci95'])} | "
                         f"{_cell(c['new'], c['new_ci95'])} | "
                         f"{_cell(c['difference'], c['difference_ci95'])} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def _cell(mean: float, half: float | None) -> str:
    return f"{mean:.3f}" if not half else f"{mean:.3f} ± {half:.3f}"


def power_table(reference: dict, half_width: float) -> list[dict]:
    """Per published difference headline cell (P-GRPO - GRPO, every method minus the
    reference method): its interval, the paired t-test's p-value, the seed-to-seed spread of
    the paired differences (their standard deviation), its minimum detectable difference and
    the seeds an interval of ``half_width`` would need at that spread."""
    rows = []
    for key, cell in reference["cells"].items():
        if not is_difference(key.split("/")[3]) or cell["ci95"] is None:
            continue
        interval = Interval(cell["mean"], cell["ci95"], cell["n_seeds"])
        needed = seeds_for_half_width(interval, half_width)
        rows.append({"cell": key, "mean": cell["mean"], "ci95": cell["ci95"],
                     "n_seeds": cell["n_seeds"], "p": p_value(interval),
                     "spread": spread(interval),
                     "mdd": minimum_detectable_difference(interval),
                     "seeds_for_half_width": needed})  # fmt: skip
    return rows


def power_markdown(rows: list[dict], half_width: float) -> str:
    lines = ["| cell | difference | seeds | p (paired t) | paired spread (SD) | "
             f"MDD (80% power) | seeds for ±{half_width} |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    lines += [f"| {r['cell']} | {_cell(r['mean'], r['ci95'])} | {r['n_seeds']} | {r['p']:.3f} | "
              f"{r['spread']:.3f} | {r['mdd']:.3f} | {r['seeds_for_half_width']} |"
              for r in rows]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Publish or compare against the reference.")
    parser.add_argument("action", choices=["publish", "compare", "power"])
    parser.add_argument("--tables", nargs="+", help="catalogue .csv tables")
    parser.add_argument("--half-width", type=float, default=0.03,
                        help="power: the target 95%% half-width of a difference")  # fmt: skip
    parser.add_argument("--manifest", help="publish: the run's manifest (its commit)")
    parser.add_argument(
        "--reference",
        help="compare: the published reference .json "
        "(none: nothing published yet, every number is new)",
    )
    parser.add_argument("--out", required=True, help="publish: .json; compare: stem (.json, .md)")
    args = parser.parse_args(argv)
    if args.action == "power":
        if not args.reference:
            raise PgrpoError("power: give the published reference (--reference)")
        rows = power_table(read_json(args.reference), args.half_width)
        write_text(args.out, power_markdown(rows, args.half_width))
        print(power_markdown(rows, args.half_width), end="")
        return
    if not args.tables:
        raise PgrpoError(f"{args.action}: give the tables (--tables)")
    if args.action == "publish":
        commit = read_json(args.manifest)["git"]["commit"] if args.manifest else None
        cells = headline_cells(args.tables)
        write_json(args.out, {"commit": commit, "cells": cells})
        print(f"{args.out}: {len(cells)} headline numbers of commit {commit}")
        return
    if args.reference and Path(args.reference).is_file():
        reference = read_json(args.reference)
    elif args.reference:
        raise PgrpoError(f"{args.reference}: file not found (the published reference)")
    else:  # nothing published yet: every number is new
        reference = {"commit": None, "cells": {}}
    result = compare(reference, args.tables)
    write_json(f"{args.out}.json", result)
    write_text(f"{args.out}.md", to_markdown(result))
    print(summary_line(result))


if __name__ == "__main__":
    run_cli(main)
