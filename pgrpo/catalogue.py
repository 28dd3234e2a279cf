"""Entry point: one of the paper's tables (:mod:`pgrpo.tables`) from the runs' files.

    python -m pgrpo.catalogue --name table1_movielens --out results/tables/table1_movielens \\
        --runs smollm2-135m/movielens/grpo/0=outputs/.../eval.json ... [--summary S.json] \\
        [--config outputs/configs/<hash>.yaml]

Writes ``--out``.csv, .md and .tex; ``--summary``, the overall means as JSON (DVC metrics).
Runs are ``KEY=PATH`` with keys ``MODEL/TASK/METHOD/SEED[/VARIANT]`` (:mod:`pgrpo.tables`).
Each task names its table and caption (``TaskSpec.table``); ``--config`` adds the tables of
the tasks its ``task_modules`` define.
"""

from __future__ import annotations

from pathlib import Path

from pgrpo.config import load_config
from pgrpo.io import PgrpoError, run_cli, write_json
from pgrpo.tables import catalogue_parser, cells, parse_runs, summary, write_tables
from pgrpo.tasks.registry import config_specs, task_specs

GENERAL = {
    "table4_general": "Table 4: general capabilities kept: held-out language-modelling loss "
    "and perplexity on general text and multiple-choice accuracy, for the base model and the "
    "adapters trained on each task (task = the training task); mean ± 95% CI over seeds.",
}


def captions(config: dict | None = None) -> dict[str, str]:
    """Caption by table name: each task's table (of ``config``'s tasks; None: the built-in
    and installed ones), then table 4."""
    specs = config_specs(config) if config is not None else task_specs()
    return {**{s.table: s.caption for s in specs.values() if s.table}, **GENERAL}


def main(argv: list[str] | None = None) -> None:
    parser = catalogue_parser("Write one of the paper's tables.", None)
    parser.add_argument("--out", required=True, help="output path without extension")
    parser.add_argument("--summary", help="JSON of overall means (DVC metrics)")
    parser.add_argument("--config", help="a config whose task_modules add tables")
    args = parser.parse_args(argv)
    known = captions(load_config(args.config) if args.config else None)
    if args.name not in known:
        raise PgrpoError(f"--name: {args.name!r} is not one of {', '.join(known)}")
    rows = cells(parse_runs(args.runs), args.reference_method)
    write_tables(rows, args.out, known[args.name])
    if args.summary:
        write_json(args.summary, summary(rows))
    print(Path(f"{args.out}.md").read_text())


if __name__ == "__main__":
    run_cli(main)
