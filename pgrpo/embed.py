"""Entry point: embed users from the texts their task gives (:mod:`pgrpo.embedding`).

Each task with clustered preference groups names a user's texts (``TaskSpec.user_texts``):
MovieLens (default), the movies of the user's training history; personas, the messages of
the user's profile. A user's embedding is the normalised mean of its texts' embeddings.

    python -m pgrpo.embed --config config.yaml [--task movielens] --data resources/movielens \
        --out FILE.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pgrpo.config import load_config
from pgrpo.embedding import embed_texts, user_embeddings
from pgrpo.io import PgrpoError, atomic_path, run_cli
from pgrpo.tasks.registry import task_spec


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Embed users from their training history.")
    parser.add_argument("--config", required=True)
    parser.add_argument("--task", help="a task with clustered groups (default: the config's first)")
    parser.add_argument("--data", required=True, help="the task's prepared folder")
    parser.add_argument("--out", required=True, help="output .npz (user_ids, embeddings)")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    spec = task_spec(args.task, config)
    if spec.user_texts is None:
        raise PgrpoError(f"--task: the {spec.name} task's groups are given, it embeds no users")
    texts, histories = spec.user_texts(Path(args.data))
    needed = sorted({i for h in histories.values() for i in h})
    encoder = config["embedding"]
    vectors = embed_texts([texts[i] for i in needed], encoder["model"], encoder["batch_size"])
    item_vectors = dict(zip(needed, vectors, strict=True))
    users, embeddings = user_embeddings(histories, item_vectors)
    with atomic_path(args.out) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, user_ids=users, embeddings=embeddings)
    print(f"embedded {len(users)} users from {len(needed)} texts, dim {embeddings.shape[1]}")


if __name__ == "__main__":
    run_cli(main)
