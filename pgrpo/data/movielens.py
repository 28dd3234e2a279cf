"""MovieLens loading and the leave-last-out split into next-movie prediction examples.

Two raw layouts are read: the RecBole atomic files of MovieLens-100K shipped inside the
``recbole==1.2.1`` wheel (offline default; the package itself is never imported) and the
GroupLens MovieLens-1M ``.dat`` files (paper scale). Parsing is strict: a malformed line raises
:class:`~pgrpo.io.PgrpoError` naming the file and line instead of being skipped.

Timestamps must be whole Unix seconds from 1995-01-01 (:data:`EARLIEST_TIMESTAMP`, before the
first MovieLens rating) to the time of reading: a negative, zero or future time is a corrupt
file (it would scramble the watch order), not a rating. Every item needs a title.

Known quirks of the RecBole ML-100K item file, repaired here: item 267 has title and year
``unkonwn`` (title becomes ``unknown``, year missing), item 1412 has year ``V`` and the year still
in its title (the year is taken from the title), and the genre flag ``unknown`` is not a genre
(it is dropped, leaving an empty genre list).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from pgrpo.io import PgrpoError, wheel_path

SOURCES = ("ml-100k", "ml-1m")
LETTERS = "ABCDEFGHIJKLMNOPQRST"
_YEAR_IN_TITLE = re.compile(r"^(.*\S)\s*\((\d{4})\)$")
_ML100K_INTER = ("user_id:token", "item_id:token", "rating:float", "timestamp:float")
_ML100K_ITEM = ("item_id:token", "movie_title:token_seq", "release_year:token", "class:token_seq")
_MISSING_YEAR = ("", "unknown", "unkonwn")
_NO_TITLE = re.compile(r"\s*(\(\d{4}\))?\s*")  # nothing, or only the year
# Ratings are dated from 1995-01-01 (before the first MovieLens rating) to the time of reading.
EARLIEST_TIMESTAMP = 788_918_400


@dataclass
class MovieLens:
    """Ratings (user_id, item_id, rating, timestamp) and items (item_id, title, year, genres)."""

    ratings: pd.DataFrame
    items: pd.DataFrame


def default_raw_dir(source: str) -> Path:
    """The folder holding ``source``'s raw files when ``movielens.raw_dir`` is null."""
    _check_source(source)
    if source != "ml-100k":
        raise PgrpoError(
            f"movielens.raw_dir: must be set for source {source!r} (a folder holding "
            "ratings.dat and movies.dat, e.g. {resources}/raw/ml-1m)"
        )
    return wheel_path("recbole", "recbole", "dataset_example/ml-100k", "movielens.source")


def load_movielens(source: str, raw_dir: str | Path) -> MovieLens:
    """Read ``source`` ("ml-100k" RecBole atomic files or "ml-1m" .dat files) from ``raw_dir``."""
    _check_source(source)
    raw_dir = Path(raw_dir)
    if source == "ml-100k":
        ratings_path, items_path = raw_dir / "ml-100k.inter", raw_dir / "ml-100k.item"
        ratings, items = _read_100k_ratings(ratings_path), _read_100k_items(items_path)
    else:
        ratings_path, items_path = raw_dir / "ratings.dat", raw_dir / "movies.dat"
        ratings, items = _read_1m_ratings(ratings_path), _read_1m_items(items_path)
    if ratings.empty:
        raise PgrpoError(f"{ratings_path}: no ratings")
    pairs = ratings.duplicated(["user_id", "item_id"])
    if pairs.any():
        first = ratings[pairs].iloc[0]
        raise PgrpoError(
            f"{ratings_path}: {int(pairs.sum())} repeated (user, item) ratings, expected each "
            f"user to rate an item once (first: user {first.user_id}, item {first.item_id})"
        )
    unknown = ~ratings.item_id.isin(items.item_id)
    if unknown.any():
        first = int(ratings.item_id[unknown].iloc[0])
        raise PgrpoError(
            f"{ratings_path}: {int(unknown.sum())} ratings reference item ids missing from "
            f"{items_path} (first: {first})"
        )
    return MovieLens(ratings=ratings, items=items)


def item_text(item) -> str:
    """``"Title (Year) [Genre1, Genre2]"`` for an items row or dict; missing parts are omitted."""
    text = str(item["title"])
    year = item["year"]
    if year is not None and not pd.isna(year):
        text += f" ({int(year)})"
    genres = list(item["genres"])
    if genres:
        text += f" [{', '.join(genres)}]"
    return text


def user_sequences(ml: MovieLens) -> dict[int, list[int]]:
    """Each user's item ids in watch order: sorted by (timestamp, item_id)."""
    users = ml.ratings.user_id.to_numpy()
    items = ml.ratings.item_id.to_numpy()
    order = np.lexsort((items, ml.ratings.timestamp.to_numpy(), users))
    users, items = users[order], items[order]
    bounds = np.flatnonzero(np.diff(users)) + 1
    starts = np.concatenate([[0], bounds]).astype(np.int64)
    return {
        int(u): seq.tolist() for u, seq in zip(users[starts], np.split(items, bounds), strict=True)
    }


def training_history(ml: MovieLens, min_ratings: int) -> dict[int, list[int]]:
    """Each kept user's items before the validation position (all but the last two), in order."""
    if min_ratings < 3:
        raise PgrpoError(f"movielens.min_ratings: expected at least 3, got {min_ratings}")
    return {u: s[:-2] for u, s in user_sequences(ml).items() if len(s) >= min_ratings}


def make_candidates(
    target: int, rated: set[int], universe: np.ndarray, num_candidates: int, rng
) -> list[int]:
    """``target`` plus ``num_candidates - 1`` distinct items from ``universe`` not in ``rated``,
    drawn uniformly without replacement, the list shuffled with ``rng``."""
    universe = np.unique(np.asarray(universe, dtype=np.int64))
    excluded = np.fromiter(set(rated) | {int(target)}, dtype=np.int64)
    pool = universe[~np.isin(universe, excluded)]
    return _draw(int(target), pool, num_candidates, rng)


def _draw(target: int, pool: np.ndarray, num_candidates: int, rng) -> list[int]:
    """Sample the negatives from ``pool`` (already free of rated items) and shuffle."""
    if len(pool) < num_candidates - 1:
        raise PgrpoError(
            f"movielens.num_candidates: {num_candidates} needs {num_candidates - 1} unrated "
            f"items, only {len(pool)} available"
        )
    picks = rng.choice(pool, size=num_candidates - 1, replace=False)
    cands = np.concatenate([np.array([target], dtype=np.int64), picks.astype(np.int64)])
    return rng.permutation(cands).tolist()


def build_examples(
    ml: MovieLens,
    history_length: int,
    num_candidates: int,
    max_train_examples_per_user: int | None,
    min_ratings: int,
    seed: int,
) -> dict[str, list[dict]]:
    """Split each user's sequence leave-last-out into train / validation / test examples.

    For a kept user with sequence ``s`` of length ``n`` (at least ``min_ratings``): test targets
    ``s[n-1]``, validation ``s[n-2]``, training positions ``i`` in ``[H, n-3]`` (the latest
    ``max_train_examples_per_user`` of them when not None); the history is ``s[i-H:i]``.
    Negatives are items the user never rated, drawn from the items that have any rating, with
    ``np.random.default_rng([seed, user_id, position])`` so each example is reproducible alone.
    Validation and test then balance the true movie's position (:func:`balance_positions`).
    """
    h, k, m = history_length, num_candidates, max_train_examples_per_user
    if h < 1:
        raise PgrpoError(f"movielens.history_length: expected at least 1, got {h}")
    if not 2 <= k <= len(LETTERS):
        raise PgrpoError(f"movielens.num_candidates: expected 2 to {len(LETTERS)}, got {k}")
    if m is not None and m < 0:
        raise PgrpoError(f"movielens.max_train_examples_per_user: expected >= 0 or null, got {m}")
    if min_ratings < h + 3:
        raise PgrpoError(
            f"movielens.min_ratings: expected at least history_length + 3 = {h + 3} "
            f"(history, one training target, validation and test), got {min_ratings}"
        )
    if seed < 0:
        raise PgrpoError(f"seed: expected a non-negative integer, got {seed}")
    universe = np.unique(ml.ratings.item_id.to_numpy())
    splits: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
    sequences = user_sequences(ml)
    most = max(map(len, sequences.values()), default=0)
    if most < min_ratings:  # every user would be dropped: nothing to train or test on
        raise PgrpoError(
            f"movielens.min_ratings: {min_ratings} drops all {len(sequences)} users (the most "
            f"ratings a user has is {most}); expected at most {most}"
        )
    for user, seq in sorted(sequences.items()):
        n = len(seq)
        if n < min_ratings:
            continue
        pool = np.setdiff1d(universe, np.asarray(seq, dtype=np.int64), assume_unique=True)
        if len(pool) < k - 1:
            raise PgrpoError(
                f"movielens.num_candidates: user {user} has only {len(pool)} unrated items, "
                f"{k - 1} needed"
            )
        train_positions = list(range(h, n - 2))
        if m is not None:
            train_positions = train_positions[max(0, len(train_positions) - m) :]
        for split, positions in (
            ("train", train_positions),
            ("validation", [n - 2]),
            ("test", [n - 1]),
        ):
            for pos in positions:
                rng = np.random.default_rng([seed, user, pos])
                cands = _draw(seq[pos], pool, k, rng)
                splits[split].append(
                    {
                        "user_id": user,
                        "position": pos,
                        "history": seq[pos - h : pos],
                        "target": seq[pos],
                        "candidates": cands,
                        "answer": LETTERS[cands.index(seq[pos])],
                    }
                )
    splits["validation"] = balance_positions(splits["validation"], k, seed)
    return {**splits, "test": balance_positions(splits["test"], k, seed)}


def balance_positions(examples: list[dict], num_candidates: int, seed: int) -> list[dict]:
    """The true movie of the i-th example of a seeded shuffle moved to letter ``i mod k`` (the
    other candidates keep their order): each letter is the answer of ``n // k`` or
    ``n // k + 1`` examples, so a constant letter cannot beat chance by luck of the draw."""
    order = np.random.default_rng([seed, num_candidates]).permutation(len(examples))
    balanced = list(examples)
    for rank, index in enumerate(order):
        e, position = examples[index], rank % num_candidates
        others = [c for c in e["candidates"] if c != e["target"]]
        others.insert(position, e["target"])
        balanced[index] = {**e, "candidates": others, "answer": LETTERS[position]}
    return balanced


# Raw file parsing -----------------------------------------------------------------------------


def _check_source(source: str) -> None:
    if source not in SOURCES:
        raise PgrpoError(f"movielens.source: expected one of {', '.join(SOURCES)}, got {source!r}")


def _read_lines(path: Path, encoding: str) -> list[str]:
    """The file's lines (trailing blank lines dropped, ``\\r\\n`` accepted)."""
    if not path.is_file():
        raise PgrpoError(f"{path}: file not found")
    data = path.read_bytes()
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise PgrpoError(f"{path}:{line}: NUL byte, expected {encoding} text (is it UTF-16?)")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise PgrpoError(f"{path}:{line}: not valid {encoding} text") from None
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _split(path: Path, lines: list[str], sep: str, layout: tuple[str, ...], first: int):
    """Split every line into ``len(layout)`` fields; line numbers start at ``first``."""
    rows = [line.split(sep) for line in lines]
    for i, row in enumerate(rows):
        if len(row) != len(layout):
            raise PgrpoError(
                f"{path}:{i + first}: expected {len(layout)} fields separated by {sep!r} "
                f"({sep.join(layout)}), found {len(row)}"
            )
    return rows


def _numbers(path: Path, values: list[str], first: int, name: str, integer: bool) -> np.ndarray:
    """Parse a column as int64 (``integer``) or finite float64, naming the first bad line."""
    dtype = np.int64 if integer else np.float64
    try:
        arr = np.array(values, dtype=dtype)
        if integer or np.isfinite(arr).all():
            return arr
    except (ValueError, OverflowError):
        pass
    for i, value in enumerate(values):
        try:
            parsed = int(value) if integer else float(value)
            ok = integer or math.isfinite(parsed)
        except (ValueError, OverflowError):
            ok = False
        if not ok:
            kind = "an integer" if integer else "a number"
            raise PgrpoError(f"{path}:{i + first}: {name} should be {kind}, found {value!r}")
    raise AssertionError("unreachable")  # pragma: no cover


def _ratings_frame(path: Path, rows: list[list[str]], first: int, int_rating: bool):
    columns = list(zip(*rows, strict=True)) if rows else [()] * 4
    user, item, rating, stamp = (list(c) for c in columns)
    stamps = _numbers(path, stamp, first, "timestamp", integer=False)
    fractional = np.flatnonzero(stamps != np.floor(stamps))
    if len(fractional):
        i = int(fractional[0])
        raise PgrpoError(f"{path}:{i + first}: timestamp should be whole seconds, found {stamp[i]}")
    _check_time_range(path, stamps, stamp, first)
    return pd.DataFrame(
        {
            "user_id": _numbers(path, user, first, "user_id", integer=True),
            "item_id": _numbers(path, item, first, "item_id", integer=True),
            "rating": _numbers(path, rating, first, "rating", integer=int_rating).astype(float),
            "timestamp": stamps.astype(np.int64),
        }
    )


def _check_time_range(path: Path, stamps: np.ndarray, raw: list[str], first: int) -> None:
    """Every timestamp from :data:`EARLIEST_TIMESTAMP` to now, else one line naming the first
    line outside (and how many there are)."""
    now = time.time()
    outside = np.flatnonzero((stamps < EARLIEST_TIMESTAMP) | (stamps > now))
    if len(outside):
        i, today = int(outside[0]), datetime.fromtimestamp(now, UTC).date()
        more = f"; {len(outside)} timestamps out of range" if len(outside) > 1 else ""
        raise PgrpoError(
            f"{path}:{i + first}: timestamp {raw[i]} is out of range, expected Unix seconds "
            f"from {EARLIEST_TIMESTAMP} (1995-01-01, before the first MovieLens rating) to now "
            f"({today} UTC){more}"
        )


def _read_header(path: Path, lines: list[str], expected: tuple[str, ...]) -> list[str]:
    header = lines[0].split("\t") if lines else []
    if header != list(expected):
        raise PgrpoError(
            f"{path}:1: expected the tab-separated header {' '.join(expected)}, "
            f"found {' '.join(header) or 'an empty file'}"
        )
    return lines[1:]


def _read_100k_ratings(path: Path) -> pd.DataFrame:
    lines = _read_header(path, _read_lines(path, "utf-8"), _ML100K_INTER)
    return _ratings_frame(path, _split(path, lines, "\t", _ML100K_INTER, 2), 2, int_rating=False)


def _read_1m_ratings(path: Path) -> pd.DataFrame:
    layout = ("UserID", "MovieID", "Rating", "Timestamp")
    rows = _split(path, _read_lines(path, "latin-1"), "::", layout, 1)
    return _ratings_frame(path, rows, 1, int_rating=True)


def _items_frame(path: Path, ids: list[str], titles, years, genres, first: int) -> pd.DataFrame:
    item_ids = _numbers(path, ids, first, "item id", integer=True)
    repeated = np.flatnonzero(pd.Series(item_ids).duplicated().to_numpy())
    if len(repeated):
        i = int(repeated[0])
        raise PgrpoError(f"{path}:{i + first}: item id {item_ids[i]} appears twice")
    for i, title in enumerate(titles):
        if _NO_TITLE.fullmatch(title):
            raise PgrpoError(
                f"{path}:{i + first}: item {item_ids[i]} has an empty title {title!r}, "
                "expected the movie's title"
            )
    return pd.DataFrame(
        {
            "item_id": item_ids,
            "title": pd.Series(titles, dtype=object),
            "year": pd.array(years, dtype="Int64"),
            "genres": pd.Series(genres, dtype=object),
        }
    )


def _read_100k_items(path: Path) -> pd.DataFrame:
    lines = _read_header(path, _read_lines(path, "utf-8"), _ML100K_ITEM)
    rows = _split(path, lines, "\t", _ML100K_ITEM, 2)
    titles, years, genres = [], [], []
    for lineno, (_, title, year, classes) in enumerate(rows, 2):
        title = "unknown" if title == "unkonwn" else title
        if re.fullmatch(r"\d{4}", year):
            year = int(year)
        elif year in _MISSING_YEAR:
            year = None
        elif match := _YEAR_IN_TITLE.match(title):
            title, year = match.group(1), int(match.group(2))
        else:
            raise PgrpoError(f"{path}:{lineno}: release_year should be 4 digits, found {year!r}")
        titles.append(title)
        years.append(year)
        genres.append([g for g in classes.split() if g != "unknown"])
    return _items_frame(path, [r[0] for r in rows], titles, years, genres, 2)


def _read_1m_items(path: Path) -> pd.DataFrame:
    rows = _split(path, _read_lines(path, "latin-1"), "::", ("MovieID", "Title", "Genres"), 1)
    titles, years = [], []
    for _, title, _ in rows:
        match = _YEAR_IN_TITLE.match(title)
        titles.append(match.group(1) if match else title)
        years.append(int(match.group(2)) if match else None)
    genres = [[g for g in r[2].split("|") if g] for r in rows]
    return _items_frame(path, [r[0] for r in rows], titles, years, genres, 1)
