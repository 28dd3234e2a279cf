"""Entry point: a task's raw data -> prompts' examples for training (and test).

``--task movielens`` (default) writes into ``--out``: ``items.jsonl`` (id, text),
``train.jsonl``, ``validation.jsonl``, ``test.jsonl`` (one example per line: user, history,
candidates, answer letter) and ``histories.json`` (each user's training history, the only
items user embeddings see). These files are derived row by row from MovieLens and must never
be committed.

``--task personas`` writes ``users.jsonl`` (the generated users with their true persona,
profile and requests), ``train.jsonl`` and ``test.jsonl`` (one example per user and request).

``--task reviews`` writes ``train.jsonl`` and ``test.jsonl`` (one example per real review:
item, review title, rating, its rating group and the review text, which only the rating model
reads) and ``groups.json`` (each example's rating group, in the clustering rule's layout: the
groups are the task's preference clusters). Each review is its own "user" (``user_id`` is the
example's index). Reviews without text are skipped and counted.

    python -m pgrpo.prepare --config config.yaml [--task movielens] --out resources/movielens
    python -m pgrpo.prepare --config config.yaml --test-candidates 8 \
        --out resources/movielens/test_c8.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from pgrpo.config import load_config
from pgrpo.data.movielens import (
    MovieLens,
    build_examples,
    default_raw_dir,
    item_text,
    load_movielens,
    training_history,
)
from pgrpo.io import PgrpoError, run_cli, seeded_subset, write_json, write_jsonl, write_text

OUTPUT_FILES = ("items.jsonl", "train.jsonl", "validation.jsonl", "test.jsonl", "histories.json")
# The files each task's prepare step writes (the rules' outputs).
PREPARED_FILES = {
    "movielens": OUTPUT_FILES,
    "personas": ("users.jsonl", "train.jsonl", "test.jsonl"),
    "reviews": ("train.jsonl", "test.jsonl", "groups.json"),
}


def subsample_users(ml: MovieLens, max_users: int | None, seed: int) -> MovieLens:
    """Keep a seeded random subset of ``max_users`` users (all of them when None)."""
    users = np.unique(ml.ratings["user_id"].to_numpy())
    if max_users is None or max_users >= len(users):
        return ml
    keep = np.random.default_rng(seed).choice(users, size=max_users, replace=False)
    ratings = ml.ratings[ml.ratings["user_id"].isin(keep)].reset_index(drop=True)
    return MovieLens(ratings=ratings, items=ml.items)


def _movielens(config: dict) -> tuple[MovieLens, dict]:
    """The (subsampled) ratings and the example-building settings of the config."""
    cfg, seed = config["movielens"], config["seed"]
    raw_dir = cfg["raw_dir"] or default_raw_dir(cfg["source"])
    ml = subsample_users(load_movielens(cfg["source"], raw_dir), cfg["max_users"], seed)
    common = dict(
        history_length=cfg["history_length"],
        max_train_examples_per_user=cfg["max_train_examples_per_user"],
        min_ratings=cfg["min_ratings"],
        seed=seed,
    )
    return ml, common


def movielens_test_candidates(config: dict, num_candidates: int, out: str | Path) -> dict:
    """The MovieLens test split again with ``num_candidates`` candidates per prompt (same
    users and true next movies; figure 3), written to the file ``out``."""
    ml, common = _movielens(config)
    test = build_examples(ml, num_candidates=num_candidates, **common)["test"]
    write_jsonl(out, test)
    return {"test": len(test), "candidates": num_candidates}


def prepare_movielens(config: dict, out_dir: str | Path) -> dict[str, int]:
    """Build and write every split; returns the number of rows written per file."""
    cfg = config["movielens"]
    ml, common = _movielens(config)
    splits = build_examples(ml, num_candidates=cfg["num_candidates"], **common)
    eval_candidates = config["evaluation"]["num_candidates"]
    if eval_candidates != cfg["num_candidates"]:
        splits["test"] = build_examples(ml, num_candidates=eval_candidates, **common)["test"]
    histories = training_history(ml, cfg["min_ratings"])
    items = [
        {
            "item_id": int(row["item_id"]),
            "title": row["title"],
            "year": None if pd.isna(row["year"]) else int(row["year"]),
            "genres": list(row["genres"]),
            "text": item_text(row),
        }
        for row in ml.items.to_dict("records")
    ]
    out_dir = Path(out_dir)
    write_jsonl(out_dir / "items.jsonl", items)
    for name in ("train", "validation", "test"):
        write_jsonl(out_dir / f"{name}.jsonl", splits[name])
    write_text(out_dir / "histories.json", json.dumps({str(u): h for u, h in histories.items()}))
    counts = {name: len(rows) for name, rows in splits.items()}
    # Users with fewer than min_ratings ratings are dropped (documented), and counted.
    dropped = f"users dropped (fewer than {cfg['min_ratings']} ratings)"
    return {"items": len(items), "users": len(histories),
            dropped: ml.ratings["user_id"].nunique() - len(histories), **counts}  # fmt: skip


def prepare_personas(config: dict, out_dir: str | Path) -> dict[str, int]:
    """Generate the persona users and write them and their examples; rows per file."""
    from pgrpo.data.personas import generate_users
    from pgrpo.tasks.personas import split_examples

    users = generate_users(config["personas"], config["seed"])
    splits = split_examples(users)
    out_dir = Path(out_dir)
    write_jsonl(out_dir / "users.jsonl", users)
    for name, rows in splits.items():
        write_jsonl(out_dir / f"{name}.jsonl", rows)
    return {"users": len(users), **{name: len(rows) for name, rows in splits.items()}}


def prepare_reviews(config: dict, out_dir: str | Path, path: str | Path | None = None):
    """Load the reviews (``path`` or config ``reviews.path`` or the clothing wheel), split them
    and write the examples and the rating groups; rows per file."""
    from pgrpo.data import reviews as data

    cfg, seed = config["reviews"], config["seed"]
    path = path or cfg["path"]
    if path is None and cfg["source"] == "goodreads":
        raise PgrpoError("reviews.path: give the Goodreads reviews file (or run the download)")
    groups = data.group_spec(cfg["rating_groups"])
    if cfg["source"] == "goodreads":
        records, skipped = data.load_goodreads_reviews(path)
    else:
        path = path or data.default_reviews_file()
        records, skipped = data.load_clothing_reviews(path)
    if not records:  # rows without text (or Goodreads' rating 0) are skipped and counted
        raise PgrpoError(f"{path}: no review with text and a rating 1-5 ({skipped} rows "
                         "skipped), expected at least one")  # fmt: skip
    records = seeded_subset(records, cfg["max_reviews"], [seed, 13])
    splits = data.split_reviews(records, cfg["test_fraction"], seed)
    labels = [data.group_label(g) for g in groups]
    out_dir, assignment, index = Path(out_dir), {}, 0
    for name in ("train", "test"):
        rows, ratings = [], [r["rating"] for r in splits[name]]
        for record, group in zip(splits[name], data.rating_groups(ratings, groups), strict=True):
            rows.append({"user_id": index, **record, "group": group, "group_label": labels[group]})
            assignment[str(index)] = group
            index += 1
        write_jsonl(out_dir / f"{name}.jsonl", rows)
    sizes = np.bincount(list(assignment.values()), minlength=len(groups)).tolist()
    write_json(out_dir / "groups.json", {
        "method": "rating", "num_clusters": len(groups), "sizes": sizes, "labels": labels,
        "assignment": assignment, "skipped_without_text": skipped,
    })  # fmt: skip
    counts = {name: len(rows) for name, rows in splits.items()}
    return {**counts, "skipped (no text or no rating)": skipped, "group sizes": sizes}


PREPARE = {"movielens": prepare_movielens, "personas": prepare_personas, "reviews": prepare_reviews}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Prepare a task's examples.")
    parser.add_argument("--config", required=True)
    parser.add_argument("--task", choices=sorted(PREPARE), default="movielens")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--raw",
        help="the raw data: movielens, the folder (overrides "
        "movielens.raw_dir); reviews, the file (overrides reviews.path)",
    )
    parser.add_argument("--test-candidates", type=int, metavar="N",
                        help="movielens: write only the test split with N candidates to --out "
                        "(a file)")  # fmt: skip
    args = parser.parse_args(argv)
    config = load_config(args.config)
    if args.raw and args.task == "personas":
        raise PgrpoError("--raw: the personas are generated, they read no raw data")
    if args.raw and args.task == "movielens":
        config["movielens"]["raw_dir"] = args.raw
    if args.test_candidates is not None:
        if args.task != "movielens":
            raise PgrpoError("--test-candidates: only the movielens task has candidates")
        counts = movielens_test_candidates(config, args.test_candidates, args.out)
        print(", ".join(f"{k}: {v}" for k, v in counts.items()))
        return
    extra = {"path": args.raw} if args.raw and args.task == "reviews" else {}
    counts = PREPARE[args.task](config, args.out, **extra)
    print(", ".join(f"{k}: {v}" for k, v in counts.items()))


if __name__ == "__main__":
    run_cli(main)
