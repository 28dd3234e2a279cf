"""Shared by the trainer tests and the multi-process script: the tiny model, a few real
MovieLens-100K examples, a task whose reward varies under a random model, and
:func:`launch_steps`, which runs tests/train_steps.py the way the workflow launches training."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from entrypoints import launch_argv

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


def launch_steps(accelerate_config, model: Path, out: Path, *args: str, processes=None):
    """tests/train_steps.py under the training rule's launcher with ``launch.accelerate_config``
    (None: the command-line flags of one process); ``processes`` overrides the file's number.
    Returns every rank's report, rank 0 first."""
    here = Path(__file__).resolve().parent
    config = {"launch": {"accelerate_config": accelerate_config}, "train": {"num_processes": 1}}
    cmd = launch_argv(config)
    if processes is not None:
        cmd += ["--num_processes", str(processes)]
    cmd += [str(here / "train_steps.py"), "--model", str(model), "--out", str(out), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=here.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(p.read_text()) for p in sorted(Path(out).glob("rank*.json"))]
