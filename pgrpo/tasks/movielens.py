"""MovieLens next-movie prediction: the prompt, the answer parser and the 0/1 reward.

The model sees the user's recent history (oldest first) and lettered candidates, and must answer
with the letter of the movie the user watched next. The reward is 1 for the right letter and 0
otherwise; an answer with no recognisable letter is reported as unparsed.
"""

from __future__ import annotations

import re

import pandas as pd

from pgrpo.data.movielens import LETTERS, item_text
from pgrpo.io import PgrpoError
from pgrpo.tasks import Task

__all__ = ["LETTERS", "MovieLensTask", "parse_answer"]

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
