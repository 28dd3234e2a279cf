"""Entry point: a task's raw data -> its prepared folder of examples (train and test).

Each task (:mod:`pgrpo.tasks.registry`) names the files it writes and how:

- ``movielens``: ``items.jsonl`` (id, text), ``train.jsonl``, ``validation.jsonl``,
  ``test.jsonl`` (one example per line: user, history, candidates, answer letter) and
  ``histories.json`` (each user's training history, the only items user embeddings see).
  These files are derived row by row from MovieLens and must never be committed.
- ``personas``: ``users.jsonl`` (the generated users with their true persona, profile and
  requests), ``train.jsonl`` and ``test.jsonl`` (one example per user and request).
- ``reviews``: ``train.jsonl`` and ``test.jsonl`` (one example per real review: item, review
  title, rating, its rating group and the review text, which only the rating model reads) and
  ``groups.json`` (each example's rating group, in the clustering rule's layout: the groups are
  the task's preference clusters). Each review is its own "user" (``user_id`` is the example's
  index). Reviews without text are skipped and counted.

    python -m pgrpo.prepare --config config.yaml [--task movielens] --out resources/movielens
    python -m pgrpo.prepare --config config.yaml --test-candidates 8 \
        --out resources/movielens/test_c8.jsonl
"""

from __future__ import annotations

import argparse

from pgrpo.config import load_config
from pgrpo.io import PgrpoError, run_cli
from pgrpo.tasks.registry import task_spec


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Prepare a task's examples.")
    parser.add_argument("--config", required=True)
    parser.add_argument("--task", help="a task of the registry (default: the config's first)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--raw", help="the raw data (a folder or a file, as the task reads it; "
                        "overrides the task's configured raw data)")  # fmt: skip
    parser.add_argument("--test-candidates", type=int, metavar="N",
                        help="a multiple-choice task: write only the test split with N "
                        "candidates to --out (a file)")  # fmt: skip
    args = parser.parse_args(argv)
    config = load_config(args.config)
    spec = task_spec(args.task, config)
    if args.raw and spec.raw is None:
        raise PgrpoError(f"--raw: the {spec.name} task generates its data, it reads no raw data")
    if args.test_candidates is not None:
        if spec.test_candidates is None:
            raise PgrpoError(f"--test-candidates: the {spec.name} task has no candidates")
        counts = spec.test_candidates(config, args.test_candidates, args.out, args.raw)
    else:
        counts = spec.prepare(config, args.out, args.raw)
    print(", ".join(f"{k}: {v}" for k, v in counts.items()))


if __name__ == "__main__":
    run_cli(main)
