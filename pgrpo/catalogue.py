"""Entry point: one of the paper's tables (:mod:`pgrpo.tables`) from the runs' files.

    python -m pgrpo.catalogue --name table1_movielens --out results/tables/table1_movielens \\
        --runs smollm2-135m/movielens/grpo/0=outputs/.../eval.json ... [--summary S.json]

Writes ``--out``.csv, .md and .tex; ``--summary``, the overall means as JSON (DVC metrics).
Runs are ``KEY=PATH`` with keys ``MODEL/TASK/METHOD/SEED[/VARIANT]`` (:mod:`pgrpo.tables`).
"""

from __future__ import annotations

from pathlib import Path

from pgrpo.io import run_cli, write_json
from pgrpo.tables import catalogue_parser, cells, parse_runs, summary, write_tables

CAPTIONS = {
    "table1_movielens": "Table 1: MovieLens next-item prediction, 4 candidates, the right one at "
    "balanced positions: letter accuracy and the right letter's probability from option "
    "scoring, greedy accuracy and parse rate (position-balanced: a constant letter scores 1/4), "
    "overall, per user cluster and in the worst cluster; the reference rows (no model); the "
    "final training reward (mean of the last 10% of steps), the share of all-equal groups and "
    "the mean advantage per cluster; mean ± 95% CI over seeds.",
    "table2_personas": "Table 2: seven synthetic personas: test reward (style + genre score) "
    "overall, per true persona and in the worst persona, usable rate, the final training "
    "reward and the clusters' adjusted Rand index; mean ± 95% CI over seeds.",
    "table3_reviews": "Table 3: review generation: test reward (rating model's probability of "
    "the target rating) overall, per rating group and in the worst group, usable rate, the "
    "final training reward and the rating model's accuracy; mean ± 95% CI over seeds.",
    "table4_general": "Table 4: general capabilities kept: held-out language-modelling loss and "
    "perplexity on general text and multiple-choice accuracy, for the base model and the "
    "adapters trained on each task (task = the training task); mean ± 95% CI over seeds.",
}


def main(argv: list[str] | None = None) -> None:
    parser = catalogue_parser("Write one of the paper's tables.", CAPTIONS)
    parser.add_argument("--out", required=True, help="output path without extension")
    parser.add_argument("--summary", help="JSON of overall means (DVC metrics)")
    args = parser.parse_args(argv)
    rows = cells(parse_runs(args.runs))
    write_tables(rows, args.out, CAPTIONS[args.name])
    if args.summary:
        write_json(args.summary, summary(rows))
    print(Path(f"{args.out}.md").read_text())


if __name__ == "__main__":
    run_cli(main)
