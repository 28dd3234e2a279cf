"""Synthetic personas: the prompt (the user's profile and request) and the style + genre reward.

The policy sees a few past messages of the user (their profile, which shows the persona's
style and favourite genre, with some noise) and one request; it must answer the way this
user would like. The reward (:func:`pgrpo.tasks.persona_scorers.persona_reward`) scores the
answer for the user's true style and genre, which the prompt never names.

Examples come from :func:`pgrpo.data.personas.generate_users`: one per (user, request); the
last request of each user is the test example, the others are training examples.
"""

from __future__ import annotations

from pathlib import Path

from pgrpo.io import PgrpoError, read_jsonl, write_jsonl
from pgrpo.tasks import Task
from pgrpo.tasks.persona_scorers import persona_reward
from pgrpo.tasks.registry import TaskSpec
from pgrpo.tasks.text_checks import copies, degenerate

__all__ = ["PersonasTask", "TASK", "prepare_personas", "split_examples"]


def split_examples(users: list[dict]) -> dict[str, list[dict]]:
    """``{"train": [...], "test": [...]}``: every request but the last of each user, and the
    last one. Each example carries the user's id, persona, style, genre, profile, request."""
    splits: dict[str, list[dict]] = {"train": [], "test": []}
    for user in users:
        if len(user["requests"]) < 2:
            raise PgrpoError(f"personas: user {user['user_id']} has fewer than 2 requests")
        common = {k: user[k] for k in ("user_id", "persona", "style", "genre", "profile")}
        *train, test = user["requests"]
        splits["train"] += [{**common, "request": r} for r in train]
        splits["test"].append({**common, "request": test})
    return splits


class PersonasTask(Task):
    """Prompts and rewards of the personas task; same interface as MovieLensTask."""

    name = "personas"

    def __init__(self, max_words: int = 80):
        self.max_words = max_words

    def prompt(self, example: dict) -> str:
        lines = ["Some messages this user wrote before:"]
        lines += [f"- {message}" for message in example["profile"]]
        lines.append(f"The user asks: {example['request']}")
        lines.append("Answer in one or two sentences, the way this user would like it.")
        return "\n".join(lines)

    def messages(self, example: dict) -> list[dict]:
        return [{"role": "user", "content": self.prompt(example)}]

    def score(self, completion: str, example: dict) -> tuple[float, bool]:
        """``(reward in [0, 1], whether the answer was usable)``: degenerate answers (empty,
        repetitive, over-long) and answers that copy 5+ consecutive words of the user's
        profile or request (the profile shows the persona's style and genre, so echoing it
        would earn the reward without answering) score 0 and count as unusable."""
        sources = [*example["profile"], example["request"]]
        if degenerate(completion, self.max_words) or copies(completion, sources):
            return 0.0, False
        return persona_reward(completion, example["style"], example["genre"], self.max_words), True

    def group_of(self, example: dict) -> str:
        return example["persona"]

    def judge_context(self, example: dict) -> tuple[str, str]:
        return "messages they wrote before: " + " / ".join(example["profile"]), example["request"]


def prepare_personas(config: dict, out_dir: str | Path, raw: str | None = None) -> dict:
    """Generate the persona users and write them and their examples; rows per file (the
    users are generated: ``raw`` is never given, the spec declares no raw data)."""
    from pgrpo.data.personas import generate_users

    users = generate_users(config["personas"], config["seed"])
    splits = split_examples(users)
    out_dir = Path(out_dir)
    write_jsonl(out_dir / "users.jsonl", users)
    for name, rows in splits.items():
        write_jsonl(out_dir / f"{name}.jsonl", rows)
    return {"users": len(users), **{name: len(rows) for name, rows in splits.items()}}


def profile_texts(data: Path) -> tuple[dict, dict[int, list]]:
    """(profile message by (user, index), each user's message keys): what a user's embedding
    averages."""
    texts, histories = {}, {}
    for user in read_jsonl(data / "users.jsonl"):
        keys = [(int(user["user_id"]), i) for i in range(len(user["profile"]))]
        texts.update(zip(keys, user["profile"], strict=True))
        histories[int(user["user_id"])] = keys
    return texts, histories


TASK = TaskSpec(
    name="personas",
    summary="answers in the style and genre of one of seven synthetic personas",
    build=lambda data_dir, config, reward_model: PersonasTask(config["personas"]["max_words"]),
    prepare=prepare_personas,
    prepared_files=("users.jsonl", "train.jsonl", "test.jsonl"),
    embedding_files=("users.jsonl",),
    user_texts=profile_texts,
    labels_file="users.jsonl",
    judged=True,
    table="table2_personas",
    caption="Table 2: seven synthetic personas: test reward (style + genre score) "
    "overall, per true persona and in the worst persona, usable rate, the final training "
    "reward and the clusters' adjusted Rand index; mean ± 95% CI over seeds.",
)
