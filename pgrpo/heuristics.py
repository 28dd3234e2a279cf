"""Entry point: a multiple-choice task's reference rows, scores that need no model.

The task declares them (``TaskSpec.reference_rows``; MovieLens: the recommenders of
:mod:`pgrpo.tasks.movielens_heuristics`). They are scored on the same test examples as
:mod:`pgrpo.evaluate`, with the same position-balanced metrics as the model's option
scoring, so a row here and a model's row compare directly.

    python -m pgrpo.heuristics --config config.yaml [--task movielens] \
        --data resources/movielens [--test resources/movielens/test_c8.jsonl] \
        --clusters outputs/movielens/clusters/kmeans_k4.json \
        --out outputs/movielens/kmeans_k4/heuristics_c4.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pgrpo.config import load_config
from pgrpo.io import PgrpoError, run_cli, write_json
from pgrpo.tasks.registry import task_spec


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Score a task's model-free reference rows.")
    parser.add_argument("--config", required=True)
    parser.add_argument("--task", help="a multiple-choice task (default: the config's first)")
    parser.add_argument("--data", required=True, help="the task's prepared folder")
    parser.add_argument("--test", help="test examples (default DATA/test.jsonl)")
    parser.add_argument("--clusters", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    config = load_config(args.config)
    spec = task_spec(args.task, config)
    if spec.reference_rows is None:
        raise PgrpoError(f"--task: the {spec.name} task has no reference rows")
    data_dir = Path(args.data)
    test = Path(args.test or data_dir / "test.jsonl")
    report = spec.reference_rows(config, data_dir, test, Path(args.clusters))
    write_json(args.out, report)
    for name, metrics in report["heuristics"].items():
        accuracy = metrics["letter_accuracy"]
        print(
            f"{name}: letter accuracy {accuracy['all']:.3f} on {report['n']} test examples "
            f"({report['num_candidates'][0]} candidates), worst cluster "
            f"{accuracy['worst_cluster']:.3f}"
        )


if __name__ == "__main__":
    run_cli(main)
