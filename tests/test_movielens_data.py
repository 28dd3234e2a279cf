"""Tests for pgrpo.data.movielens: parsing both layouts, and the leave-last-out split."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from pgrpo.data.movielens import (
    LETTERS,
    MovieLens,
    balance_positions,
    build_examples,
    default_raw_dir,
    item_text,
    load_movielens,
    make_candidates,
    training_history,
    user_sequences,
)
from pgrpo.io import PgrpoError

MOVIES_1M = (
    "1::Toy Story (1995)::Animation|Children's|Comedy\n"
    "2::Misérables, Les (1995)::Drama|Musical\n"
    "3::City of Lost Children, The (Cité des enfants perdus, La) (1995)::Adventure|Sci-Fi\n"
    "4::Untitled Project::Drama\n"
)
RATINGS_1M = "1::1::5::978300760\n1::2::3::978302109\n2::3::4::978301968\n2::1::1::978300275\n"


@pytest.fixture(scope="module")
def ml100k() -> MovieLens:
    return load_movielens("ml-100k", default_raw_dir("ml-100k"))


def write_1m(folder, ratings=RATINGS_1M, movies=MOVIES_1M, encoding="latin-1"):
    (folder / "ratings.dat").write_bytes(ratings.encode(encoding))
    (folder / "movies.dat").write_bytes(movies.encode(encoding))
    return folder


def item(ml: MovieLens, item_id: int) -> pd.Series:
    return ml.items.set_index("item_id").loc[item_id]


# --------------------------------------------------------------------------- ML-100K (wheel)


def test_ml100k_counts_and_dtypes(ml100k):
    r, i = ml100k.ratings, ml100k.items
    assert (len(r), r.user_id.nunique(), r.item_id.nunique(), len(i)) == (100000, 943, 1682, 1682)
    assert [str(t) for t in r.dtypes] == ["int64", "int64", "float64", "int64"]
    assert list(r.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert list(i.columns) == ["item_id", "title", "year", "genres"]
    assert str(i.dtypes["year"]) == "Int64" and str(i.dtypes["item_id"]) == "int64"
    assert set(r.rating) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert r.timestamp.between(874_000_000, 894_000_000).all()


def test_ml100k_known_items(ml100k):
    toy = item(ml100k, 1)
    assert (toy.title, toy.year, toy.genres) == (
        "Toy Story",
        1995,
        ["Animation", "Children's", "Comedy"],
    )
    assert item_text(toy) == "Toy Story (1995) [Animation, Children's, Comedy]"
    assert item(ml100k, 543).title == "Misérables, Les"  # UTF-8 in the wheel
    assert item(ml100k, 1633).title == "Á köldum klaka (Cold Fever)"
    unknown = item(ml100k, 267)  # title and year "unkonwn", genre flag "unknown"
    assert pd.isna(unknown.year) and unknown.title == "unknown" and unknown.genres == []
    assert item_text(unknown) == "unknown"
    land = item(ml100k, 1412)  # release_year "V", year still in the title
    assert (land.title, land.year) == ("Land Before Time III: The Time of the Great Giving", 1995)
    assert ml100k.items.year.isna().sum() == 1


def test_ml100k_header_and_encoding_errors(tmp_path):
    src = default_raw_dir("ml-100k")
    (tmp_path / "ml-100k.item").write_bytes((src / "ml-100k.item").read_bytes())
    inter = (src / "ml-100k.inter").read_text().splitlines()[:5]
    (tmp_path / "ml-100k.inter").write_text(
        "user_id\titem_id\trating\ttimestamp\n" + "\n".join(inter[1:])
    )
    with pytest.raises(PgrpoError, match=r"ml-100k\.inter:1: expected the tab-separated header"):
        load_movielens("ml-100k", tmp_path)
    (tmp_path / "ml-100k.inter").write_text("\n".join(inter[:3] + ["7\t8\t3\t88125094.5"]))
    with pytest.raises(PgrpoError, match=r"ml-100k\.inter:4: timestamp should be whole seconds"):
        load_movielens("ml-100k", tmp_path)
    (tmp_path / "ml-100k.inter").write_text("\n".join(inter), encoding="utf-16")
    with pytest.raises(PgrpoError, match=r"ml-100k\.inter:1: NUL byte"):
        load_movielens("ml-100k", tmp_path)


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("-881250949", r":3: timestamp -881250949 is out of range, expected Unix seconds from "
                       r"788918400 \(1995-01-01, before the first MovieLens rating\) to now "
                       r"\(\d{4}-\d\d-\d\d UTC\)$"),
        ("32503680000", r":3: timestamp 32503680000 is out of range"),  # the year 3000
        ("788918399", r":3: timestamp 788918399 is out of range"),  # a second before 1995
    ],
    ids=["negative", "future", "before-1995"],
)  # fmt: skip
def test_ml100k_timestamps_out_of_range_name_the_line(tmp_path, stamp, expected):
    src = default_raw_dir("ml-100k")
    (tmp_path / "ml-100k.item").write_bytes((src / "ml-100k.item").read_bytes())
    inter = (src / "ml-100k.inter").read_text().splitlines()[:5]
    inter[2] = "\t".join(inter[2].split("\t")[:3] + [stamp])
    (tmp_path / "ml-100k.inter").write_text("\n".join(inter) + "\n")
    with pytest.raises(PgrpoError, match=re.escape(str(tmp_path / "ml-100k.inter")) + expected):
        load_movielens("ml-100k", tmp_path)


def test_ml100k_an_empty_title_names_the_line(tmp_path):
    src = default_raw_dir("ml-100k")
    (tmp_path / "ml-100k.inter").write_bytes((src / "ml-100k.inter").read_bytes())
    items = (src / "ml-100k.item").read_text().splitlines()
    items[1] = "1\t\t1995\tAnimation Children's Comedy"  # Toy Story without its title
    (tmp_path / "ml-100k.item").write_text("\n".join(items) + "\n")
    message = (
        f"{tmp_path / 'ml-100k.item'}:2: item 1 has an empty title '', expected the movie's title"
    )
    with pytest.raises(PgrpoError, match=re.escape(message)):
        load_movielens("ml-100k", tmp_path)


def test_default_raw_dir_and_source_errors():
    assert (default_raw_dir("ml-100k") / "ml-100k.inter").is_file()
    with pytest.raises(PgrpoError, match=r"movielens\.raw_dir: must be set"):
        default_raw_dir("ml-1m")
    with pytest.raises(PgrpoError, match=r"movielens\.source: expected one of ml-100k, ml-1m"):
        load_movielens("ml-10m", "/nonexistent")


# --------------------------------------------------------------------------- ML-1M (fixture)


def test_ml1m_parsed_exactly(tmp_path):
    ml = load_movielens("ml-1m", write_1m(tmp_path))
    assert ml.ratings.to_dict("list") == {
        "user_id": [1, 1, 2, 2],
        "item_id": [1, 2, 3, 1],
        "rating": [5.0, 3.0, 4.0, 1.0],
        "timestamp": [978300760, 978302109, 978301968, 978300275],
    }
    assert [str(t) for t in ml.ratings.dtypes] == ["int64", "int64", "float64", "int64"]
    items = ml.items.to_dict("list")
    assert items["title"] == [
        "Toy Story",
        "Misérables, Les",
        "City of Lost Children, The (Cité des enfants perdus, La)",
        "Untitled Project",
    ]
    assert list(ml.items.year)[:3] == [1995, 1995, 1995] and pd.isna(ml.items.year[3])
    assert items["genres"][2] == ["Adventure", "Sci-Fi"]
    assert item_text(ml.items.iloc[3]) == "Untitled Project [Drama]"
    assert user_sequences(ml) == {1: [1, 2], 2: [1, 3]}


BAD_1M = [
    ("ratings.dat", RATINGS_1M + "3::1::4\n", r"ratings\.dat:5: expected 4 fields"),
    ("ratings.dat", "1::1::4.5::978300760\n", r"dat:1: rating should be an integer, found '4\.5'"),
    ("ratings.dat", "1::1::5::97830x\n", r"ratings\.dat:1: timestamp should be a number"),
    ("ratings.dat", RATINGS_1M.replace("::", ","), r"ratings\.dat:1: expected 4 fields .* found 1"),
    ("ratings.dat", RATINGS_1M.encode("utf-16"), r"ratings\.dat:1: NUL byte"),
    ("ratings.dat", "1::1::5::1\n\n1::2::5::2\n", r"ratings\.dat:2: expected 4 fields"),
    ("ratings.dat", "", r"ratings\.dat: no ratings"),
    (
        "ratings.dat",
        RATINGS_1M + "9::7::2::978300001\n9::8::2::978300002\n",
        r"ratings\.dat: 2 ratings reference item ids missing from .*movies\.dat \(first: 7\)",
    ),
    (
        "ratings.dat",
        RATINGS_1M + "1::1::2::978300005\n",
        r"ratings\.dat: 1 repeated \(user, item\)",
    ),
    ("movies.dat", MOVIES_1M + "5::Heat (1995)\n", r"movies\.dat:5: expected 3 fields"),
    ("movies.dat", "x1::Heat (1995)::Action\n", r"movies\.dat:1: item id should be an integer"),
    ("movies.dat", MOVIES_1M + "1::Heat (1995)::A\n", r"movies\.dat:5: item id 1 appears twice"),
]


@pytest.mark.parametrize(("file", "content", "expected"), BAD_1M)
def test_ml1m_misparse_raises(tmp_path, file, content, expected):
    write_1m(tmp_path)
    data = content if isinstance(content, bytes) else content.encode("latin-1")
    (tmp_path / file).write_bytes(data)
    with pytest.raises(PgrpoError, match=expected) as err:
        load_movielens("ml-1m", tmp_path)
    assert "\n" not in str(err.value) and str(tmp_path / file) in str(err.value)


def test_ml1m_missing_file(tmp_path):
    write_1m(tmp_path)
    (tmp_path / "movies.dat").unlink()
    with pytest.raises(PgrpoError, match=f"{tmp_path / 'movies.dat'}: file not found"):
        load_movielens("ml-1m", tmp_path)


def test_ml1m_is_latin1_not_utf8(tmp_path):
    """A UTF-8 file read as latin-1 would garble the accent: the fixture bytes must be latin-1."""
    write_1m(tmp_path)
    assert "Misérables".encode("latin-1") in (tmp_path / "movies.dat").read_bytes()
    assert load_movielens("ml-1m", tmp_path).items.title[1] == "Misérables, Les"


# --------------------------------------------------------------------------- split


def synthetic(seed: int, users: int = 40, items: int = 60) -> MovieLens:
    """Random ratings with many timestamp ties; user sizes from 2 to 30."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, users + 1):
        for item_id in rng.choice(np.arange(1, items + 1), size=rng.integers(2, 31), replace=False):
            rows.append((user, int(item_id), float(rng.integers(1, 6)), int(rng.integers(0, 8))))
    ratings = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    return MovieLens(ratings=ratings, items=items_frame(items))


def items_frame(n: int) -> pd.DataFrame:
    """Items 1..n titled M1..Mn, no year, genre Drama."""
    ids = np.arange(1, n + 1)
    year = pd.array([None] * n, dtype="Int64")
    titles = [f"M{i}" for i in ids]
    return pd.DataFrame({"item_id": ids, "title": titles, "year": year, "genres": [["Drama"]] * n})


def reference_sequences(ml: MovieLens) -> dict[int, list[int]]:
    """Watch order computed independently with pandas."""
    df = ml.ratings.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    return {int(u): g.item_id.tolist() for u, g in df.groupby("user_id")}


def check_split(ml, ex, h, k, m, min_ratings):
    seqs = reference_sequences(ml)
    universe = set(ml.ratings.item_id)
    kept = {u for u, s in seqs.items() if len(s) >= min_ratings}
    assert {e["user_id"] for e in ex["test"]} == kept == {e["user_id"] for e in ex["validation"]}
    assert len(ex["test"]) == len(ex["validation"]) == len(kept)
    by_user = {u: {"train": [], "validation": [], "test": []} for u in kept}
    for split, examples in ex.items():
        for e in examples:
            s, pos = seqs[e["user_id"]], e["position"]
            by_user[e["user_id"]][split].append(e)
            assert (
                e["target"] == s[pos]
                and e["history"] == s[pos - h : pos]
                and len(e["history"]) == h
            )
            c = e["candidates"]
            assert len(c) == k == len(set(c)) and c.count(e["target"]) == 1
            assert c[LETTERS.index(e["answer"])] == e["target"]
            assert not (set(c) - {e["target"]}) & set(s) and set(c) <= universe
    for u, parts in by_user.items():
        s, n = seqs[u], len(seqs[u])
        (test,), (val,) = parts["test"], parts["validation"]
        assert (test["position"], val["position"]) == (n - 1, n - 2)
        positions = list(range(h, n - 2))
        assert [e["position"] for e in parts["train"]] == (
            positions if m is None else positions[max(0, len(positions) - m) :]
        )
        seen_train = {x for e in parts["train"] for x in e["history"] + [e["target"]]}
        assert test["target"] not in seen_train | set(val["history"]) | {val["target"]}
        assert val["target"] not in seen_train


@pytest.mark.slow
@pytest.mark.parametrize(("h", "k", "m", "min_ratings"), [(5, 4, 20, 10), (3, 10, 40, 6)])
def test_split_ml100k(ml100k, h, k, m, min_ratings):
    ex = build_examples(ml100k, h, k, m, min_ratings, seed=0)
    check_split(ml100k, ex, h, k, m, min_ratings)
    counts = np.bincount([LETTERS.index(e["answer"]) for e in ex["train"]], minlength=k)
    assert counts.min() > 0.8 * len(ex["train"]) / k  # the target's letter is uniform


@pytest.mark.parametrize("data_seed", range(5))
@pytest.mark.parametrize(
    ("h", "k", "m", "min_ratings"), [(2, 4, 3, 5), (1, 3, None, 4), (4, 5, 0, 9)]
)
def test_split_synthetic(data_seed, h, k, m, min_ratings):
    ml = synthetic(data_seed)
    check_split(ml, build_examples(ml, h, k, m, min_ratings, seed=data_seed), h, k, m, min_ratings)


@pytest.mark.slow
def test_split_deterministic_and_seeded(ml100k):
    a = build_examples(ml100k, 5, 4, 20, 10, seed=0)
    assert a == build_examples(ml100k, 5, 4, 20, 10, seed=0)
    b = build_examples(ml100k, 5, 4, 20, 10, seed=1)
    strip = lambda ex: [{**e, "candidates": None, "answer": None} for e in ex["test"]]  # noqa: E731
    assert strip(a) == strip(b)
    differ = sum(
        x["candidates"] != y["candidates"] for x, y in zip(a["test"], b["test"], strict=True)
    )
    assert differ > 0.9 * len(a["test"])
    # Each example's candidates come from its own rng: default_rng([seed, user_id, position]).
    seqs, universe = reference_sequences(ml100k), np.unique(ml100k.ratings.item_id)
    # Test examples then move the true movie to its balanced position (the others keep order).
    for e in a["train"][::500] + a["test"][::100]:
        rng = np.random.default_rng([0, e["user_id"], e["position"]])
        rated = set(seqs[e["user_id"]])
        drawn = make_candidates(e["target"], rated, universe, 4, rng)
        if e in a["train"]:
            assert drawn == e["candidates"]
        else:
            drawn.remove(e["target"])
            assert [c for c in e["candidates"] if c != e["target"]] == drawn
    # An example does not depend on which other users are present (same item universe).
    others = MovieLens(ml100k.ratings[ml100k.ratings.user_id >= 7], ml100k.items)
    assert others.ratings.item_id.nunique() == 1682
    alone = build_examples(others, 5, 4, 20, 10, seed=0)
    assert alone["train"] == [e for e in a["train"] if e["user_id"] >= 7]


@pytest.mark.parametrize("k", [2, 3, 4, 7, 20])
@pytest.mark.parametrize("data_seed", range(3))
def test_validation_and_test_answers_are_balanced_over_the_letters(data_seed, k):
    ml = synthetic(data_seed, users=23)
    ex = build_examples(ml, 2, k, 3, 5, seed=data_seed)
    check_split(ml, ex, 2, k, 3, 5)
    for split in ("validation", "test"):
        counts = np.bincount([LETTERS.index(e["answer"]) for e in ex[split]], minlength=k)
        assert len(counts) == k and counts.max() - counts.min() <= 1, (split, counts)
    # A constant answer is right for n // k or n // k + 1 examples, whichever letter it is.
    n = len(ex["test"])
    for letter in LETTERS[:k]:
        assert sum(e["answer"] == letter for e in ex["test"]) in (n // k, -(-n // k))


def test_balance_positions_keeps_the_other_candidates_in_order():
    examples = [
        {"target": t, "candidates": c, "answer": LETTERS[c.index(t)]}
        for t, c in [(5, [1, 5, 2]), (9, [9, 3, 4]), (7, [6, 8, 7]), (2, [2, 1, 3])]
    ]
    out = balance_positions(examples, 3, seed=4)
    assert [sorted(LETTERS.index(e["answer"]) for e in out).count(p) for p in range(3)] == [2, 1, 1]
    for before, after in zip(examples, out, strict=True):
        t = before["target"]
        assert after["candidates"][LETTERS.index(after["answer"])] == t
        assert [c for c in after["candidates"] if c != t] == [
            c for c in before["candidates"] if c != t
        ]
    assert out == balance_positions(examples, 3, seed=4) != balance_positions(examples, 3, seed=5)


def test_split_argument_errors(ml100k):
    with pytest.raises(PgrpoError, match=r"movielens\.min_ratings: expected at least .* = 8"):
        build_examples(ml100k, 5, 4, 20, 7, seed=0)
    with pytest.raises(PgrpoError, match=r"movielens\.num_candidates"):
        build_examples(ml100k, 5, 21, 20, 10, seed=0)
    with pytest.raises(PgrpoError, match=r"movielens\.max_train_examples_per_user"):
        build_examples(ml100k, 5, 4, -1, 10, seed=0)
    with pytest.raises(PgrpoError, match=r"movielens\.num_candidates: user 1 has only 1 unrated"):
        build_examples(synthetic_full(), 1, 3, None, 4, seed=0)


def synthetic_full() -> MovieLens:
    """User 1 rated 5 of the 6 rated items."""
    ratings = pd.DataFrame(
        {
            "user_id": [1] * 5 + [2],
            "item_id": [1, 2, 3, 4, 5, 6],
            "rating": [3.0] * 6,
            "timestamp": range(6),
        }
    )
    return MovieLens(ratings, items_frame(6))


def test_make_candidates():
    universe = np.arange(1, 11)
    rated = {1, 2, 3, 4, 5, 6}
    seen = set()
    for s in range(50):
        c = make_candidates(3, rated, universe, 4, np.random.default_rng(s))
        assert len(c) == 4 == len(set(c)) and 3 in c and not (set(c) - {3}) & rated
        seen |= set(c) - {3}
    assert seen == {7, 8, 9, 10}
    assert make_candidates(3, rated, universe, 4, np.random.default_rng(1)) == make_candidates(
        3, rated, universe, 4, np.random.default_rng(1)
    )
    with pytest.raises(PgrpoError, match=r"needs 5 unrated items, only 4"):
        make_candidates(3, rated, universe, 6, np.random.default_rng(0))


def test_training_history(ml100k):
    hist = training_history(ml100k, 10)
    seqs = reference_sequences(ml100k)
    assert hist.keys() == {u for u, s in seqs.items() if len(s) >= 10}
    assert all(hist[u] == seqs[u][:-2] for u in hist)
    test = {e["user_id"]: e for e in build_examples(ml100k, 5, 4, 20, 10, seed=0)["test"]}
    assert all(test[u]["target"] not in hist[u] for u in hist)
