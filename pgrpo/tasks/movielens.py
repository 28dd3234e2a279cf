"""MovieLens next-movie prediction: the prompt, the answer parser and the 0/1 reward.

The model sees the user's recent history (oldest first) and lettered candidates, and must answer
with the letter of the movie the user watched next. The reward is 1 for the right letter and 0
otherwise; an answer with no recognisable letter is reported as unparsed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from pgrpo.data.movielens import (
    LETTERS,
    MovieLens,
    build_examples,
    default_raw_dir,
    item_text,
    load_movielens,
    training_history,
)
from pgrpo.io import PgrpoError, read_json, read_jsonl, write_jsonl, write_text
from pgrpo.tasks import Task
from pgrpo.tasks.registry import Source, TaskSpec

__all__ = ["LETTERS", "MovieLensTask", "TASK", "parse_answer", "prepare_movielens"]

# A letter standing alone: not inside a word or number (so "Air", "A1", "B-52" do not count).
_ALONE = r"(?<![A-Za-z0-9])\(?([A-T])\)?(?![A-Za-z0-9'])"
# Explicit statements of the choice; the keywords ignore case, the letter must be uppercase.
_STATED = [
    re.compile(r"(?i:answer)\s*(?:(?i:is|would be|will be)\s*)?[:\-]?\s*(?:\*\*)?" + _ALONE),
    re.compile(r"(?i:option|choice)\s*(?:(?i:is)\s*)?[:\-]?\s*(?:\*\*)?" + _ALONE),
]
# A letter right after a stated choice that turns it into a range or alternative ("D to A").
_HEDGE = re.compile(r"\s*(?:(?i:to|or|and)\s+|[-/,&]\s*)\(?[A-T]\)?(?![A-Za-z0-9'])")
# "A" and "I" starting a sentence are usually English words, unless followed by "is".
_WORD_START = re.compile(r"[AI]\s+(?!is\b)[a-z]")


def parse_answer(text: str, num_candidates: int) -> str | None:
    """The candidate letter ``text`` chooses, or None when there is none or it is ambiguous.

    Rules, in order (only uppercase letters among the first ``num_candidates`` count):

    1. After stripping whitespace and markdown emphasis, a valid letter at the very start,
       optionally in parentheses, followed by the end or a non-alphanumeric character:
       ``"D"``, ``"B."``, ``"(C)"``, ``"A. Air Bud (1"``. ``"A"``/``"I"`` followed by a lowercase
       word is the article/pronoun, not a choice (``"A user will ..."``); ``"A is ..."`` counts.
    2. Otherwise explicit statements anywhere: ``"answer is X"``, ``"answer: X"``,
       ``"option X"``, ``"option is X"``, ``"choice X"``. If they name different letters the
       answer is ambiguous (None).

    A chosen letter followed by another letter as a range or alternative (``"option D to A"``,
    ``"B or C"``, ``"A/B"``) is ambiguous: None. Letters outside the candidates (``"E"`` with 4
    candidates) never count, and free text naming a title without a letter gives None.
    """
    valid = LETTERS[:num_candidates]
    text = text.strip().lstrip("*_ \t\n")
    start = re.match(r"\(?([A-T])(?:\)|(?![A-Za-z0-9']))", text)
    if start and not _WORD_START.match(text):
        letter = start.group(1)
        if letter not in valid or _HEDGE.match(text, start.end()):
            return None
        return letter
    letters = set()
    for pattern in _STATED:
        for match in pattern.finditer(text):
            if match.group(1) not in valid:
                continue
            if _HEDGE.match(text, match.end()):
                return None
            letters.add(match.group(1))
    return letters.pop() if len(letters) == 1 else None


class MovieLensTask(Task):
    """Prompts and rewards for next-movie prediction over lettered candidates."""

    name = "movielens"
    too_long_hint = "lower movielens.history_length or set movielens.truncate_history: true"

    def __init__(self, items: dict[int, dict], truncate_history: bool = False):
        """``items`` maps item_id to a dict with "title", "year" (int or None) and "genres";
        ``truncate_history``: a prompt too long for the model drops its oldest movies."""
        self.items = items
        self.truncate_history = truncate_history
        self._text: dict[int, str] = {}

    @classmethod
    def from_items_frame(cls, df: pd.DataFrame) -> MovieLensTask:
        """Build from the ``items`` frame of :class:`pgrpo.data.movielens.MovieLens`."""
        items = {}
        for item_id, title, year, genres in zip(
            df["item_id"], df["title"], df["year"], df["genres"], strict=True
        ):
            year = None if pd.isna(year) else int(year)
            items[int(item_id)] = {"title": str(title), "year": year, "genres": list(genres)}
        return cls(items)

    def text(self, item_id: int) -> str:
        """The item's display text, ``"Title (Year) [Genre, ...]"``."""
        item_id = int(item_id)
        if item_id not in self._text:
            if item_id not in self.items:
                raise PgrpoError(f"movielens task: item id {item_id} is not in the item table")
            self._text[item_id] = item_text(self.items[item_id])
        return self._text[item_id]

    def prompt(self, example: dict) -> str:
        """The user-turn text: numbered history (oldest first), then lettered candidates."""
        candidates = example["candidates"]
        if not 2 <= len(candidates) <= len(LETTERS):
            raise PgrpoError(
                f"movielens task: expected 2 to {len(LETTERS)} candidates, got {len(candidates)}"
            )
        lines = ["A user recently watched these movies, oldest first:"]
        lines += [f"{i}. {self.text(item)}" for i, item in enumerate(example["history"], 1)]
        lines.append("Which movie will the user watch next?")
        lines += [f"{LETTERS[i]}. {self.text(item)}" for i, item in enumerate(candidates)]
        lines.append("Answer with the letter of one option.")
        return "\n".join(lines)

    def shorten(self, example: dict) -> dict | None:
        """The example without its oldest watched movie (one must stay), if allowed."""
        if not self.truncate_history or len(example["history"]) < 2:
            return None
        return {**example, "history": example["history"][1:]}

    def messages(self, example: dict) -> list[dict]:
        """Chat messages for the policy: one user turn holding :meth:`prompt`."""
        return [{"role": "user", "content": self.prompt(example)}]

    def options(self, example: dict) -> tuple[list[str], int]:
        """The candidate letters and the index of the right one."""
        k = len(example["candidates"])
        return list(LETTERS[:k]), LETTERS.index(example["answer"])

    def score(self, completion: str, example: dict) -> tuple[float, bool]:
        """``(1.0 if the parsed letter is the answer else 0.0, whether a letter was parsed)``."""
        parsed = parse_answer(completion, len(example["candidates"]))
        return (1.0 if parsed == example["answer"] else 0.0), parsed is not None


# Preparation: the ratings -> examples (derived row by row from MovieLens: never committed).
OUTPUT_FILES = ("items.jsonl", "train.jsonl", "validation.jsonl", "test.jsonl", "histories.json")


def subsample_users(ml: MovieLens, max_users: int | None, seed: int) -> MovieLens:
    """Keep a seeded random subset of ``max_users`` users (all of them when None)."""
    users = np.unique(ml.ratings["user_id"].to_numpy())
    if max_users is None or max_users >= len(users):
        return ml
    keep = np.random.default_rng(seed).choice(users, size=max_users, replace=False)
    ratings = ml.ratings[ml.ratings["user_id"].isin(keep)].reset_index(drop=True)
    return MovieLens(ratings=ratings, items=ml.items)


def _movielens(config: dict, raw: str | None) -> tuple[MovieLens, dict]:
    """The (subsampled) ratings and the example-building settings of the config; ``raw``
    overrides ``movielens.raw_dir``."""
    cfg, seed = config["movielens"], config["seed"]
    raw_dir = raw or cfg["raw_dir"] or default_raw_dir(cfg["source"])
    ml = subsample_users(load_movielens(cfg["source"], raw_dir), cfg["max_users"], seed)
    common = dict(
        history_length=cfg["history_length"],
        max_train_examples_per_user=cfg["max_train_examples_per_user"],
        min_ratings=cfg["min_ratings"],
        seed=seed,
    )
    return ml, common


def movielens_test_candidates(
    config: dict, num_candidates: int, out: str | Path, raw: str | None = None
) -> dict:
    """The MovieLens test split again with ``num_candidates`` candidates per prompt (same
    users and true next movies; figure 3), written to the file ``out``."""
    ml, common = _movielens(config, raw)
    test = build_examples(ml, num_candidates=num_candidates, **common)["test"]
    write_jsonl(out, test)
    return {"test": len(test), "candidates": num_candidates}


def prepare_movielens(config: dict, out_dir: str | Path, raw: str | None = None) -> dict:
    """Build and write every split from ``raw`` (a folder; default ``movielens.raw_dir``);
    returns the number of rows written per file."""
    cfg = config["movielens"]
    ml, common = _movielens(config, raw)
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


def history_texts(data: Path) -> tuple[dict, dict[int, list]]:
    """(movie text by item id, each user's training history of item ids): what a user's
    embedding averages."""
    items = {row["item_id"]: row["text"] for row in read_jsonl(data / "items.jsonl")}
    histories = {int(u): h for u, h in read_json(data / "histories.json").items()}
    unknown = sorted({i for h in histories.values() for i in h} - items.keys())
    if unknown:
        raise PgrpoError(f"{data / 'histories.json'}: {len(unknown)} item ids missing from "
                         f"{data / 'items.jsonl'} (first: {unknown[0]})")  # fmt: skip
    return items, histories


def reference_rows(config: dict, data_dir: Path, test: Path, clusters: Path) -> dict:
    """The model-free recommenders' rows (:mod:`pgrpo.tasks.movielens_heuristics`, imported
    when scored: its metrics need torch, which parsing the workflow must not import)."""
    from pgrpo.tasks.movielens_heuristics import reference_rows as rows

    return rows(config, data_dir, test, clusters)


def _build(data_dir: Path, config: dict, reward_model: str | None) -> MovieLensTask:
    items = {row["item_id"]: row for row in read_jsonl(data_dir / "items.jsonl")}
    return MovieLensTask(items, truncate_history=config["movielens"]["truncate_history"])


def _raw(config: dict, resources: str) -> str:
    """The raw folder: configured, or under {resources}/raw (ml-100k copied out of the
    recbole wheel, ml-1m downloaded)."""
    cfg = config["movielens"]
    return cfg["raw_dir"] or f"{resources}/raw/{cfg['source']}"


def _check(config: dict, source: str) -> None:
    cfg = config["movielens"]
    if cfg["min_ratings"] < cfg["history_length"] + 3:
        raise PgrpoError(
            f"{source}: movielens.min_ratings: {cfg['min_ratings']} is less than "
            f"history_length + 3 = {cfg['history_length'] + 3}"
        )


def _sources(config: dict) -> tuple[Source, ...]:
    return (
        Source("extract_movielens_100k", "ml-100k", "--source ml-100k",
               "Copying MovieLens-100K out of the recbole wheel (sha256-pinned)",
               directory=True),
        Source("download_movielens_1m", "ml-1m", "--source ml-1m",
               "Downloading MovieLens-1M (sha256-pinned)", directory=True, mem_mb=1000,
               runtime=30),
    )  # fmt: skip


TASK = TaskSpec(
    name="movielens",
    summary="MovieLens next-movie prediction over lettered candidates",
    build=_build,
    prepare=prepare_movielens,
    prepared_files=OUTPUT_FILES,
    read_files=("train.jsonl", "test.jsonl", "items.jsonl"),
    raw=_raw,
    sources=_sources,
    embedding_files=("items.jsonl", "histories.json"),
    user_texts=history_texts,
    test_candidates=movielens_test_candidates,
    reference_rows=reference_rows,
    reference_files=("items.jsonl", "histories.json"),
    table="table1_movielens",
    caption="Table 1: MovieLens next-item prediction, 4 candidates, the right one at "
    "balanced positions: letter accuracy and the right letter's probability from option "
    "scoring, greedy accuracy and parse rate (position-balanced: a constant letter scores 1/4), "
    "overall, per user cluster and in the worst cluster; the reference rows (no model); the "
    "final training reward (mean of the last 10% of steps), the share of all-equal groups and "
    "the mean advantage per cluster; mean ± 95% CI over seeds.",
    data_params=lambda config: {"candidates": config["evaluation"]["num_candidates"]},
    check=_check,
)
