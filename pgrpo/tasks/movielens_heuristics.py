"""Reference rows for the MovieLens test: recommenders that need no model.

Each heuristic gives every candidate of a test example a score; its pick is the candidate
with the highest score, and tied candidates share the credit (:func:`pgrpo.choices.
option_credit`). The picks are scored with the same position-balanced metrics as the
model's option scoring (:func:`pgrpo.choices.choice_metrics`), on the same test examples as
:mod:`pgrpo.evaluate` (the users of the clusters file, then the seeded subset of
``evaluation.max_users``), so a row here and a model's row compare directly.

* ``one_letter``: always the first letter (content-blind; exactly ``1 / k``);
* ``recent``: the newest release year (a missing year is the oldest);
* ``genre``: how many of the example's history movies (as the prompt shows them) share at
  least one genre with the candidate;
* ``popularity``: how many users' training histories (``histories.json``, the training
  split only) contain the candidate.

The MovieLens task declares them (``TaskSpec.reference_rows``); :mod:`pgrpo.heuristics`
writes them.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from pgrpo.choices import choice_metrics
from pgrpo.config import task_config
from pgrpo.data.movielens import LETTERS
from pgrpo.io import (
    PgrpoError,
    load_clusters,
    read_json,
    read_jsonl,
    seeded_subset,
)

HEURISTICS = ("one_letter", "recent", "genre", "popularity")


def load_items(path: str | Path) -> dict[int, dict]:
    """item id -> its ``items.jsonl`` row (``year``: int or None, ``genres``: a list); a row
    without these keys is a one-line error naming the file and line."""
    items = {}
    for line, row in enumerate(read_jsonl(path), 1):
        try:
            year, genres = row["year"], row["genres"]
            if (year is not None and not isinstance(year, int)) or not isinstance(genres, list):
                raise TypeError(f"year {year!r}, genres {genres!r}")
            items[int(row["item_id"])] = {"year": year, "genres": genres}
        except (KeyError, TypeError, ValueError) as e:
            raise PgrpoError(
                f"{path}:{line}: not an item row ({type(e).__name__}: {e}), expected "
                '{"item_id": id, "year": int or null, "genres": [...], ...}'
            ) from None
    return items


def load_histories(path: str | Path) -> dict[int, list[int]]:
    """user id -> the item ids of the user's training history, from ``histories.json``."""
    data = read_json(path)
    try:
        return {int(u): [int(i) for i in h] for u, h in data.items()}
    except (AttributeError, TypeError, ValueError) as e:
        raise PgrpoError(
            f"{path}: not a histories file ({type(e).__name__}: {e}), expected "
            '{"<user id>": [item ids], ...}'
        ) from None


def item_popularity(histories: dict[int, list[int]]) -> Counter:
    """item id -> the number of users whose training history contains it."""
    return Counter(i for history in histories.values() for i in set(history))


def _where(source: str, example: dict) -> str:
    return f"{source}: user {example.get('user_id')}, position {example.get('position')}"


def _item(items: dict, item: int, source: str, example: dict, role: str) -> dict:
    if item not in items:
        raise PgrpoError(f"{_where(source, example)}: {role} {item} is not in items.jsonl")
    return items[item]


def right_positions(examples: list[dict], source: str = "examples") -> tuple[np.ndarray, int]:
    """Each example's right index (from its answer letter) and the common candidate count k;
    a bad answer letter or examples with different k are one-line errors."""
    if not examples:
        raise PgrpoError(f"{source}: no test examples (after keeping the clusters' users)")
    sizes = sorted({len(e["candidates"]) for e in examples})
    if len(sizes) != 1:
        raise PgrpoError(
            f"{source}: examples with {sizes} candidates, expected one candidate count per "
            "file (score each test file, e.g. test_c8.jsonl, on its own)"
        )
    k, right = sizes[0], []
    for e in examples:
        answer = e.get("answer")
        if not isinstance(answer, str) or answer not in LETTERS[:k] or len(answer) != 1:
            raise PgrpoError(
                f"{_where(source, e)}: answer {answer!r} is not one of A..{LETTERS[k - 1]}"
            )
        right.append(LETTERS.index(answer))
    return np.array(right), k


def heuristic_scores(
    examples: list[dict], items: dict[int, dict], histories: dict[int, list[int]],
    source: str = "examples",
) -> dict[str, np.ndarray]:  # fmt: skip
    """Each heuristic's scores [n, k] of every example's candidates (higher = picked);
    ``source`` names the examples' file in errors (a candidate or history movie missing from
    ``items``, different candidate counts)."""
    _, k = right_positions(examples, source)
    popular = item_popularity(histories)
    scores = {name: np.zeros((len(examples), k)) for name in HEURISTICS}
    scores["one_letter"][:, 0] = 1.0
    for n, e in enumerate(examples):
        seen = [
            set(_item(items, int(i), source, e, "history movie")["genres"]) for i in e["history"]
        ]
        for j, c in enumerate(e["candidates"]):
            item = _item(items, int(c), source, e, "candidate")
            genres = set(item["genres"])
            scores["recent"][n, j] = -np.inf if item["year"] is None else item["year"]
            scores["genre"][n, j] = sum(bool(genres & g) for g in seen)
            scores["popularity"][n, j] = popular[int(c)]
    return scores


def picks(scores: np.ndarray) -> np.ndarray:
    """The one-hot rows [n, k] of each example's top-scored candidates (ties: several ones)."""
    return (scores == scores.max(1, keepdims=True)).astype(float)


def heuristics_report(
    examples: list[dict], items: dict[int, dict], histories: dict[int, list[int]],
    cluster_of_user: dict[int, int], source: str = "examples",
) -> dict:  # fmt: skip
    """Every heuristic's position-balanced scores (:func:`pgrpo.choices.choice_metrics`) on
    ``examples``, overall and per cluster of ``cluster_of_user``."""
    right, k = right_positions(examples, source)
    clusters = np.array([cluster_of_user[e["user_id"]] for e in examples])
    scores = heuristic_scores(examples, items, histories, source)
    return {
        "task": "movielens",
        "n": len(examples),
        "num_candidates": [k],
        "heuristics": {
            name: choice_metrics(picks(s), right, clusters) for name, s in scores.items()
        },
    }


def reference_rows(config: dict, data_dir: Path, test: Path, clusters: Path) -> dict:
    """The MovieLens reference rows (:func:`heuristics_report`) on ``test``: the same examples
    as :mod:`pgrpo.evaluate` (the users of ``clusters``, then the seeded subset of
    ``evaluation.max_users``), with the prepared items and training histories of
    ``data_dir``."""
    cfg = task_config(config, "movielens")["evaluation"]
    cluster_of_user, _ = load_clusters(clusters)
    items = load_items(data_dir / "items.jsonl")
    histories = load_histories(data_dir / "histories.json")
    examples = [e for e in read_jsonl(test) if e["user_id"] in cluster_of_user]
    examples = seeded_subset(examples, cfg["max_users"], config["seed"])
    return heuristics_report(examples, items, histories, cluster_of_user, str(test))
