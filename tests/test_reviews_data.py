"""Review loaders read the real clothing parquet and the Goodreads JSON-lines layout right."""

from __future__ import annotations

import gzip
import json
from collections import Counter

import pytest

from pgrpo.data.reviews import (
    default_reviews_file,
    group_label,
    group_spec,
    load_clothing_reviews,
    load_goodreads_reviews,
    rating_groups,
    split_reviews,
)
from pgrpo.io import PgrpoError


@pytest.fixture(scope="module")
def clothing():
    return load_clothing_reviews(default_reviews_file())


def test_clothing_reviews_from_the_wheel(clothing):
    records, skipped = clothing
    assert skipped == 845 and len(records) == 23486 - 845
    first = records[0]
    assert first["text"] == "Absolutely wonderful - silky and sexy and comfortable"
    assert (first["rating"], first["item_id"], first["title"]) == (4, 767, "")
    assert first["item"] == "Intimates (Intimate, Initmates)"  # the file's own spelling
    ratings = Counter(r["rating"] for r in records)
    assert set(ratings) == {1, 2, 3, 4, 5}
    assert ratings[5] > ratings[4] > ratings[3] > ratings[2] > ratings[1]  # low = minority
    assert len({r["review_id"] for r in records}) == len(records)


def test_clothing_errors_name_the_file(tmp_path):
    with pytest.raises(PgrpoError, match="nothing.parquet: file not found"):
        load_clothing_reviews(tmp_path / "nothing.parquet")
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(PgrpoError, match="bad.parquet: not a parquet file"):
        load_clothing_reviews(bad)
    import pandas as pd

    partial = tmp_path / "partial.parquet"
    pd.DataFrame({"Review Text": ["ok"], "Rating": [3]}).to_parquet(partial)
    with pytest.raises(PgrpoError, match="partial.parquet: missing column.*Clothing ID"):
        load_clothing_reviews(partial)


def goodreads_row(i: int, rating: int, text: str) -> dict:
    """One line of the Goodreads reviews dump, all its fields."""
    return {
        "user_id": f"u{i % 3}", "book_id": str(1000 + i), "review_id": f"r{i}",
        "rating": rating, "review_text": text, "date_added": "Sun Jul 30 07:44:10 -0700 2017",
        "date_updated": "Wed Aug 30 00:00:26 -0700 2017", "read_at": "", "started_at": "",
        "n_votes": 0, "n_comments": 0,
    }  # fmt: skip


@pytest.mark.parametrize("gz", [False, True])
def test_goodreads_json_lines(tmp_path, gz):
    rows = [goodreads_row(0, 5, "A wonderful book."), goodreads_row(1, 0, "No stars given."),
            goodreads_row(2, 2, "   "), goodreads_row(3, 1, "Dull and long.")]  # fmt: skip
    path = tmp_path / ("reviews.json.gz" if gz else "reviews.json")
    text = "\n".join(json.dumps(r) for r in rows) + "\n"
    with gzip.open(path, "wt") if gz else open(path, "w") as f:
        f.write(text)
    records, skipped = load_goodreads_reviews(path)
    assert skipped == 2  # rating 0, and blank text
    assert [(r["review_id"], r["rating"], r["text"]) for r in records] == [
        ("r0", 5, "A wonderful book."), ("r3", 1, "Dull and long.")
    ]  # fmt: skip
    assert records[0]["item_id"] == "1000"


def test_goodreads_errors_name_the_line(tmp_path):
    path = tmp_path / "reviews.json"
    path.write_text(json.dumps(goodreads_row(0, 4, "fine")) + "\n{not json\n")
    with pytest.raises(PgrpoError, match=r"reviews.json:2: not a JSON object"):
        load_goodreads_reviews(path)
    row = goodreads_row(0, 4, "fine")
    del row["rating"]
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(PgrpoError, match=r"reviews.json:1: missing 'rating'"):
        load_goodreads_reviews(path)


def test_groups_and_split(clothing):
    records, _ = clothing
    assert rating_groups([1, 5, 3]) == [0, 4, 2]
    assert rating_groups([1, 2, 5, 3], [[4, 5], [1, 2], [3]]) == [1, 1, 0, 2]
    assert [group_label(g) for g in group_spec([[2, 1], [3], [5, 4]])] == ["1-2", "3", "4-5"]
    assert group_label([1, 3]) == "1,3"
    for bad in ([[1], [5]], [[1, 2], [2, 3, 4, 5]]):
        with pytest.raises(PgrpoError, match=r"reviews.rating_groups: every rating 1-5"):
            group_spec(bad)
    split = split_reviews(records, 0.1, seed=0)
    train = {r["review_id"] for r in split["train"]}
    test = {r["review_id"] for r in split["test"]}
    assert not train & test and len(train) + len(test) == len(records)
    assert abs(len(test) - 0.1 * len(records)) <= 1
    assert split_reviews(records, 0.1, seed=1)["test"] != split["test"]
