"""Entry point: fit a task's reward model on the TRAIN split and measure it on test.

A task whose reward is a fitted model declares how to fit it (``TaskSpec.fit_reward``). The
reviews' rating model (all-MiniLM-L6-v2 embeddings + balanced logistic regression, see
:class:`pgrpo.tasks.reviews.RatingModel`) is the probability of the target rating group given
a generated review; it is fitted on real reviews of ``train.jsonl`` only and its held-out
accuracy is measured on ``test.jsonl``, whose reviews it never saw.

    python -m pgrpo.rating_model --config config.yaml [--task reviews] --data resources/reviews \
        --out outputs/reviews/rating_model.npz --report outputs/reviews/rating_model.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from pgrpo.config import load_config
from pgrpo.io import PgrpoError, run_cli, write_json
from pgrpo.tasks.registry import config_specs, task_spec


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fit a task's reward model.")
    parser.add_argument("--config", required=True)
    parser.add_argument("--task", help="a task with a fitted reward (default: the config's first)")
    parser.add_argument("--data", required=True, help="the task's prepared folder")
    parser.add_argument("--out", required=True, help="output .npz (the model)")
    parser.add_argument("--report", required=True, help="output JSON (held-out accuracy)")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    fitted = [t for t in config["tasks"] if config_specs(config)[t].reward_model]
    spec = task_spec(args.task or (fitted or config["tasks"])[0], config)
    if not spec.reward_model:
        raise PgrpoError(f"--task: the {spec.name} task's reward is not a fitted model")
    torch.set_num_threads(config["train"]["threads"])
    started = time.perf_counter()
    report = spec.fit_reward(config, Path(args.data), args.out)
    report["seconds"] = time.perf_counter() - started
    write_json(args.report, report)
    print(
        f"{spec.name} reward model: accuracy {report['accuracy']:.3f}, balanced accuracy "
        f"{report['balanced_accuracy']:.3f} (chance {report['chance_balanced_accuracy']:.3f}) "
        f"on {report['n_test']} held-out examples; fitted on {report['n_train']}"
    )


if __name__ == "__main__":
    run_cli(main)
