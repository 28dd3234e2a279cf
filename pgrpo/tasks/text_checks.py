"""Checks shared by the text tasks' rewards: an answer that is not a real answer scores 0."""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-z0-9'/-]+")


def degenerate(answer: str, max_words: int = 80) -> bool:
    """Empty, longer than ``max_words`` words, or repetitive: one word making up over a
    third of an answer of 6+ words, or fewer than 40% distinct words."""
    words = _WORD.findall(answer.lower())
    if not words or len(words) > max_words:
        return True
    if len(words) >= 6:
        most = max(words.count(w) for w in set(words))
        if most / len(words) > 1 / 3 or len(set(words)) / len(words) < 0.4:
            return True
    return False


def copies(answer: str, sources: list[str], run: int = 5) -> bool:
    """Whether ``answer`` repeats ``run`` or more consecutive words of one of ``sources``
    (the prompt's own text: a policy that echoes the user's messages is not answering)."""
    words = _WORD.findall(answer.lower())
    if len(words) < run:
        return False
    grams = {tuple(words[i : i + run]) for i in range(len(words) - run + 1)}
    for source in sources:
        seen = _WORD.findall(source.lower())
        if any(tuple(seen[i : i + run]) in grams for i in range(len(seen) - run + 1)):
            return True
    return False
