"""Entry point: the judge's win rates of P-GRPO over GRPO per preference group (figure 5).

Reads the ``pgrpo.winrates`` files of the tasks with true groups and writes one bar per group
(one panel per task, 0.5 = no preference) as PNG and SVG, and the numbers as a table
(``.csv`` long format: task, group, wins, ties, losses, n, win_rate; and ``.md``).

    python -m pgrpo.figure_winrates --winrates personas=W1.json reviews=W2.json \\
        --figure results/figures/fig5_judge_winrates --table results/tables/judge_winrates
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pgrpo.io import PgrpoError, atomic_path, read_json, run_cli
from pgrpo.report import _pairs, write_table


def table(results: dict[str, dict]) -> list[dict]:
    return [
        {"task": task, "first": r["first"], "second": r["second"], "group": group,
         **{k: cell[k] for k in ("wins", "ties", "losses", "n", "win_rate")}}
        for task, r in results.items() for group, cell in r["per_group"].items()
    ]  # fmt: skip


def plot(results: dict[str, dict], stem: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), squeeze=False)
    for ax, (task, r) in zip(axes[0], results.items(), strict=True):
        groups = list(r["per_group"])
        rates = [r["per_group"][g]["win_rate"] for g in groups]
        ax.bar(range(len(groups)), rates, color="C1")
        ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
        ax.set_xticks(range(len(groups)), groups, rotation=45, ha="right")
        ax.set_ylim(0, 1)
        ax.set_title(f"{task}: {r['first']} vs {r['second']} ({r['pairs']} prompts)")
        ax.set_ylabel(f"win rate of {r['first']} (ties count half)")
    fig.tight_layout()
    for suffix in ("png", "svg"):
        with atomic_path(f"{stem}.{suffix}") as tmp:
            fig.savefig(tmp, format=suffix, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Plot the judge's win rates per group.")
    parser.add_argument("--winrates", nargs="+", required=True, help="TASK=winrates.json")
    parser.add_argument("--figure", required=True, help="output path without extension")
    parser.add_argument("--table", required=True, help="output path without extension")
    args = parser.parse_args(argv)
    results = {}
    for task, path in _pairs(args.winrates, "--winrates").items():
        results[task] = read_json(path)
        if not results[task].get("per_group"):
            raise PgrpoError(f"{path}: no judged pairs")
    rows = table(results)
    plot(results, args.figure)
    write_table(rows, args.table)
    print(Path(f"{args.table}.md").read_text())


if __name__ == "__main__":
    run_cli(main)
