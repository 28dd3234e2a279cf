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
