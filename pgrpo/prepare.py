"""Entry point: a task's raw data -> prompts' examples for training (and test).

``--task movielens`` (default) writes into ``--out``: ``items.jsonl`` (id, text),
``train.jsonl``, ``validation.jsonl``, ``test.jsonl`` (one example per line: user, history,
candidates, answer letter) and ``histories.json`` (each user's training history, the only
items user embeddings see). These files are derived row by row from MovieLens and must never
be committed.

``--task personas`` writes ``users.jsonl`` (the generated users with their true persona,
profile and requests), ``train.jsonl`` and ``test.jsonl`` (one example per user and request).

    python -m pgrpo.prepare --config config.yaml [--task movielens] --out resources/movielens
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
from pgrpo.io import run_cli, write_jsonl, write_text

OUTPUT_FILES = ("items.jsonl", "train.jsonl", "validation.jsonl", "test.jsonl", "histories.json")


def subsample_users(ml: MovieLens, max_users: int | None, seed: int) -> MovieLens:
    """Keep a seeded random subset of ``max_users`` users (all of them when None)."""
    users = np.unique(ml.ratings["user_id"].to_numpy())
    if max_users is None or max_users >= len(users):
        return ml
    keep = np.random.default_rng(seed).choice(users, size=max_users, replace=False)
    ratings = ml.ratings[ml.ratings["user_id"].isin(keep)].reset_index(drop=True)
    return MovieLens(ratings=ratings, items=ml.items)


def prepare_movielens(config: dict, out_dir: str | Path) -> dict[str, int]:
    """Build and write every split; returns the number of rows written per file."""
    cfg, seed = config["movielens"], config["seed"]
    raw_dir = cfg["raw_dir"] or default_raw_dir(cfg["source"])
    ml = subsample_users(load_movielens(cfg["source"], raw_dir), cfg["max_users"], seed)
    common = dict(
        history_length=cfg["history_length"],
        max_train_examples_per_user=cfg["max_train_examples_per_user"],
        min_ratings=cfg["min_ratings"],
        seed=seed,
    )
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
    return {"items": len(items), "users": len(histories), **counts}


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Prepare a task's examples.")
    parser.add_argument("--config", required=True)
    parser.add_argument("--task", choices=["movielens", "personas"], default="movielens")
    parser.add_argument("--out", required=True, help="output folder")
    args = parser.parse_args(argv)
    prepare = prepare_personas if args.task == "personas" else prepare_movielens
    counts = prepare(load_config(args.config), args.out)
    print(", ".join(f"{k}: {v}" for k, v in counts.items()))


if __name__ == "__main__":
    run_cli(main)
