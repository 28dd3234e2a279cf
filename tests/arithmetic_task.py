"""A fourth task, defined outside the package: the proof that a task is a plugin.

Arithmetic questions asked by users of two groups that want the answer in different
formats: "digits" users want ``12``, "words" users want ``twelve``. The groups are given
(``groups.json``), the reward is 1 for the right number in the user's format, 0.5 for the
right number in the other format, 0 otherwise. The config enables it with
``task_modules: [arithmetic_task]`` (this folder on ``PYTHONPATH``) and ``tasks:
[arithmetic]``; its section ``arithmetic`` takes ``num_users`` and ``questions_per_user``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from pgrpo.io import write_json, write_jsonl
from pgrpo.tasks import Task
from pgrpo.tasks.registry import TaskSpec

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen"]  # fmt: skip
GROUPS = ("digits", "words")


def as_number(text: str) -> tuple[int | None, str | None]:
    """(the first number in ``text``, the format it is written in)."""
    match = re.search(r"\d+|" + "|".join(sorted(WORDS, key=len, reverse=True)), text.lower())
    if match is None:
        return None, None
    word = match.group(0)
    return (int(word), "digits") if word.isdigit() else (WORDS.index(word), "words")


class ArithmeticTask(Task):
    name = "arithmetic"

    def messages(self, example: dict) -> list[dict]:
        return [{"role": "user", "content": f"What is {example['a']} + {example['b']}?"}]

    def score(self, completion: str, example: dict) -> tuple[float, bool]:
        number, written = as_number(completion)
        if number is None:
            return 0.0, False
        if number != example["a"] + example["b"]:
            return 0.0, True
        return (1.0 if written == example["format"] else 0.5), True

    def group_of(self, example: dict) -> str:
        return example["format"]


def prepare(config: dict, out_dir: str | Path, raw: str | None = None) -> dict:
    cfg = config["arithmetic"]
    rng = np.random.default_rng(config["seed"])
    rows, assignment = {"train": [], "test": []}, {}
    for user in range(cfg["num_users"]):
        group = user % len(GROUPS)
        assignment[str(user)] = group
        for i in range(cfg["questions_per_user"] + 1):
            a, b = (int(x) for x in rng.integers(0, 10, size=2))
            split = "test" if i == cfg["questions_per_user"] else "train"
            rows[split].append({"user_id": user, "a": a, "b": b, "format": GROUPS[group]})
    out_dir = Path(out_dir)
    for split, examples in rows.items():
        write_jsonl(out_dir / f"{split}.jsonl", examples)
    sizes = np.bincount(list(assignment.values()), minlength=len(GROUPS)).tolist()
    write_json(out_dir / "groups.json", {"method": "given", "num_clusters": len(GROUPS),
                                         "sizes": sizes, "labels": list(GROUPS),
                                         "assignment": assignment})  # fmt: skip
    return {split: len(examples) for split, examples in rows.items()}


TASK = TaskSpec(
    name="arithmetic",
    summary="sums answered in the user's preferred format (digits or words)",
    build=lambda data_dir, config, reward_model: ArithmeticTask(),
    prepare=prepare,
    prepared_files=("train.jsonl", "test.jsonl", "groups.json"),
    grouping="given",
    table="table5_arithmetic",
    caption="Table 5: sums in the user's format: test reward overall, per format and in the "
    "worst format; mean ± 95% CI over seeds.",
    schema={
        "description": "Arithmetic questions for two groups of users (a test plugin).",
        "additionalProperties": False,
        "properties": {
            "num_users": {"type": "integer", "minimum": 2, "default": 8},
            "questions_per_user": {"type": "integer", "minimum": 1, "default": 3},
        },
    },
)
