"""Shared by the trainer tests and the multi-process script: the tiny model, a few real
MovieLens-100K examples, and a task whose reward varies under a random model."""

from __future__ import annotations

from pathlib import Path

from pgrpo.tasks import Task


class LengthParityTask(Task):
    """MovieLens prompts, reward = parity of the answer's length: the random tiny model then
    gets varied rewards, so the advantages (and the update) are not zero."""

    def __init__(self, task):
        self.messages = task.messages

    def score(self, completion: str, example: dict) -> tuple[float, bool]:
        return float(len(completion) % 2), True


def tiny_training_inputs(model_dir: Path, examples: int = 8):
    """(tokenizer, task, examples, cluster of each user, stop ids); materialises the tiny
    model into ``model_dir`` unless it is there."""
    from pgrpo.data.movielens import build_examples, default_raw_dir, load_movielens
    from pgrpo.models import load_tokenizer, materialize_model, stop_token_ids
    from pgrpo.tasks.movielens import MovieLensTask

    if not (Path(model_dir) / "config.json").is_file():
        materialize_model("tiny", model_dir)
    ml = load_movielens("ml-100k", default_raw_dir("ml-100k"))
    rows = build_examples(ml, 3, 4, 1, 10, seed=0)["train"][:examples]
    tokenizer = load_tokenizer(model_dir)
    clusters = {e["user_id"]: i % 2 for i, e in enumerate(rows)}
    task = LengthParityTask(MovieLensTask.from_items_frame(ml.items))
    return tokenizer, task, rows, clusters, stop_token_ids(tokenizer)
