"""Entry point: fit the reviews task's rating model on the TRAIN split and measure it on test.

The model (all-MiniLM-L6-v2 embeddings + balanced logistic regression, see
:class:`pgrpo.tasks.reviews.RatingModel`) is the reward of review generation: the
probability of the target rating group given a generated review. It is fitted on real reviews
of ``train.jsonl`` only (a seeded subset of ``reviews.rating_model_max_reviews``) and its
held-out accuracy is measured on ``test.jsonl``, whose reviews it never saw; the run stops if
a test review is among its training reviews.

    python -m pgrpo.rating_model --config config.yaml --data resources/reviews \
        --out outputs/reviews/rating_model.npz --report outputs/reviews/rating_model.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from pgrpo.config import load_config
from pgrpo.io import PgrpoError, read_jsonl, run_cli, seeded_subset, write_json
from pgrpo.tasks.reviews import RatingModel


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fit the reviews task's rating model.")
    parser.add_argument("--config", required=True)
    parser.add_argument("--data", required=True, help="prepared reviews folder")
    parser.add_argument("--out", required=True, help="output .npz (the model)")
    parser.add_argument("--report", required=True, help="output JSON (held-out accuracy)")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    torch.set_num_threads(config["train"]["threads"])
    started = time.perf_counter()
    data = Path(args.data)
    train = seeded_subset(
        read_jsonl(data / "train.jsonl"), config["reviews"]["rating_model_max_reviews"],
        [config["seed"], 17],
    )  # fmt: skip
    test = read_jsonl(data / "test.jsonl")
    leaked = {r["review_id"] for r in train} & {r["review_id"] for r in test}
    if leaked:
        raise PgrpoError(f"{data}: {len(leaked)} test reviews are also in train.jsonl")
    encoder = config["embedding"]["model"]
    model = RatingModel.fit(train, [r["group"] for r in train], encoder, config["seed"])
    held_out = model.accuracy(test, [r["group"] for r in test])
    labels = {r["group"]: r["group_label"] for r in train + test}
    model.save(args.out)
    report = {
        **held_out,
        "chance_balanced_accuracy": 1.0 / len(model.groups),
        "n_train": len(train),
        "n_test": len(test),
        "groups": [labels[g] for g in model.groups],
        "seconds": time.perf_counter() - started,
    }
    write_json(args.report, report)
    print(
        f"rating model: accuracy {report['accuracy']:.3f}, balanced accuracy "
        f"{report['balanced_accuracy']:.3f} (chance {report['chance_balanced_accuracy']:.3f}) "
        f"on {len(test)} held-out reviews; fitted on {len(train)}"
    )


if __name__ == "__main__":
    run_cli(main)
