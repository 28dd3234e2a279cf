"""Tests for pgrpo.prepare: the CLI on bad and good ML-1M files, and ML-100K user subsampling."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from entrypoints import one_error_line, run_entry

from pgrpo.config import validate_config
from pgrpo.io import read_jsonl
from pgrpo.tasks.movielens import OUTPUT_FILES, prepare_movielens

REPO = Path(__file__).resolve().parents[1]
NUM_MOVIES = 20
# user -> number of ratings; user 9 has too few (min_ratings = 10) and is dropped
RATING_COUNTS = {1: 12, 2: 10, 3: 15, 4: 11, 5: 13, 9: 5}
KEPT_USERS = [1, 2, 3, 4, 5]
GENRES = ["Action", "Comedy", "Drama", "Sci-Fi", "Children's"]


def movies_dat() -> str:
    lines = ["1::Misérables, Les (1995)::Drama|Musical"]
    for movie in range(2, NUM_MOVIES + 1):
        genres = "|".join(GENRES[(movie + j) % len(GENRES)] for j in range(1 + movie % 2))
        lines.append(f"{movie}::Movie Number {movie} ({1980 + movie})::{genres}")
    return "\n".join(lines) + "\n"


def ratings_lines() -> list[str]:
    lines = []
    for user, count in RATING_COUNTS.items():
        for j in range(count):
            movie = (user * 7 + j) % NUM_MOVIES + 1
            lines.append(f"{user}::{movie}::{1 + (user + j) % 5}::{978300000 + 100 * j + user}")
    return lines


def write_raw(raw: Path, ratings: list[str] | None = None, movies: bool = True) -> Path:
    raw.mkdir(parents=True, exist_ok=True)
    if ratings is not None:
        (raw / "ratings.dat").write_bytes(("\n".join(ratings) + "\n").encode("latin-1"))
    if movies:
        (raw / "movies.dat").write_bytes(movies_dat().encode("latin-1"))
    return raw


def write_config(tmp_path: Path, raw: Path) -> Path:
    config = {
        "paths": {
            "resources": str(tmp_path / "resources"),
            "outputs": str(tmp_path / "outputs"),
            "results": str(tmp_path / "results"),
        },
        "movielens": {"source": "ml-1m", "raw_dir": str(raw)},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def prepare_cli(tmp_path: Path, raw: Path, out: Path) -> subprocess.CompletedProcess:
    config = write_config(tmp_path, raw)
    return run_entry("pgrpo.prepare", "--config", str(config), "--out", str(out), cwd=tmp_path)


# ------------------------------------------------------------------------- bad input


def test_missing_ratings_file(tmp_path):
    raw = write_raw(tmp_path / "raw", ratings=None)
    out = tmp_path / "prepared"
    line = one_error_line(prepare_cli(tmp_path, raw, out))
    assert str(raw / "ratings.dat") in line and "not found" in line
    assert not out.exists()


def test_missing_raw_folder(tmp_path):
    raw = tmp_path / "no-such-raw"
    out = tmp_path / "prepared"
    line = one_error_line(prepare_cli(tmp_path, raw, out))
    assert "ratings.dat" in line
    assert not out.exists()


@pytest.mark.parametrize(
    ("bad_line", "words"),
    [
        ("3::4::5", ("expected 4 fields", "found 3")),
        ("3::4::4.5::978300000", ("rating", "'4.5'")),
        ("3::four::4::978300000", ("item_id", "'four'")),
    ],
)
def test_corrupt_ratings_names_file_and_line(tmp_path, bad_line, words):
    lines = ratings_lines()
    lines[6] = bad_line
    raw = write_raw(tmp_path / "raw", ratings=lines)
    out = tmp_path / "prepared"
    line = one_error_line(prepare_cli(tmp_path, raw, out))
    assert f"{raw / 'ratings.dat'}:7:" in line
    for word in words:
        assert word in line
    assert not out.exists()


RANGE = (r"is out of range, expected Unix seconds from 788918400 \(1995-01-01, before the first "
         r"MovieLens rating\) to now \(\d{4}-\d\d-\d\d UTC\)")  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        (lambda i, t: -t if i % 2 else t, (2, -978300101, "; 33 timestamps out of range")),
        (lambda i, t: 0 if i == 6 else t, (7, 0, "")),
        (lambda i, t: t + 2_000_000_000, (1, 2978300001, "; 66 timestamps out of range")),
    ],
    ids=["half-negative", "zero", "future"],
)
def test_timestamps_out_of_range_name_the_file_and_line(tmp_path, stamp, expected):
    """A negative, zero or future time is a damaged file (it would scramble the watch order)."""
    lines = []
    for i, line in enumerate(ratings_lines()):
        rest, seconds = line.rsplit("::", 1)
        lines.append(f"{rest}::{stamp(i, int(seconds))}")
    raw = write_raw(tmp_path / "raw", ratings=lines)
    out = tmp_path / "prepared"
    line = one_error_line(prepare_cli(tmp_path, raw, out))
    lineno, value, count = expected
    path = re.escape(f"error: {raw / 'ratings.dat'}:{lineno}: timestamp {value} ")
    assert re.fullmatch(f"{path}{RANGE}{count}", line), line
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("title", ["", "  ", "(1995)"])
def test_an_empty_movie_title_names_the_file_and_line(tmp_path, title):
    raw = write_raw(tmp_path / "raw", ratings=ratings_lines())
    movies = (raw / "movies.dat").read_text(encoding="latin-1").splitlines()
    movies[2] = f"3::{title}::Drama"
    (raw / "movies.dat").write_text("\n".join(movies) + "\n", encoding="latin-1")
    out = tmp_path / "prepared"
    assert one_error_line(prepare_cli(tmp_path, raw, out)) == (
        f"error: {raw / 'movies.dat'}:3: item 3 has an empty title {title!r}, expected the "
        "movie's title"
    )
    assert not out.exists()


def test_rating_of_an_unknown_movie(tmp_path):
    lines = ratings_lines() + [f"4::{NUM_MOVIES + 5}::3::978309999"]
    raw = write_raw(tmp_path / "raw", ratings=lines)
    out = tmp_path / "prepared"
    line = one_error_line(prepare_cli(tmp_path, raw, out))
    assert "ratings.dat" in line and "movies.dat" in line and str(NUM_MOVIES + 5) in line
    assert not out.exists()


@pytest.mark.parametrize(
    ("encode", "words"),
    [
        (lambda lines: "\n".join(lines).replace("::", "\t").encode(),
         ":1: expected 4 fields separated by '::' (UserID::MovieID::Rating::Timestamp), found 1"),
        (lambda lines: "\n".join(lines).encode("utf-16"),
         ":1: NUL byte, expected latin-1 text (is it UTF-16?)"),
    ],
    ids=["tab-separated", "utf-16"],
)  # fmt: skip
def test_wrong_separator_or_encoding_names_file_and_line(tmp_path, encode, words):
    raw = write_raw(tmp_path / "raw")
    (raw / "ratings.dat").write_bytes(encode(ratings_lines()))
    out = tmp_path / "prepared"
    line = one_error_line(prepare_cli(tmp_path, raw, out))
    assert f"{raw / 'ratings.dat'}{words}" in line
    assert not out.exists()


def test_no_user_left_after_the_min_ratings_filter(tmp_path):
    raw = write_raw(tmp_path / "raw", ratings=ratings_lines())
    config = write_config(tmp_path, raw)
    settings = yaml.safe_load(config.read_text())
    settings["movielens"]["min_ratings"] = 16  # the most any user has is 15
    config.write_text(yaml.safe_dump(settings))
    out = tmp_path / "prepared"
    done = run_entry("pgrpo.prepare", "--config", str(config), "--out", str(out), cwd=tmp_path)
    assert one_error_line(done) == (
        "error: movielens.min_ratings: 16 drops all 6 users (the most ratings a user has "
        "is 15); expected at most 15"
    )
    assert not out.exists()


def test_users_with_too_little_history_are_dropped_and_counted(tmp_path):
    raw = write_raw(tmp_path / "raw", ratings=ratings_lines())
    done = prepare_cli(tmp_path, raw, tmp_path / "prepared")
    assert done.returncode == 0, done.stderr
    assert "users: 5, users dropped (fewer than 10 ratings): 1," in done.stdout  # user 9


# ------------------------------------------------------------------------- good input


def test_valid_ml1m_fixture(tmp_path):
    raw = write_raw(tmp_path / "raw", ratings=ratings_lines())
    out = tmp_path / "prepared"
    result = prepare_cli(tmp_path, raw, out)
    assert result.returncode == 0, result.stderr
    # exactly the five outputs, no temporary files beside them
    assert sorted(os.listdir(out)) == sorted(OUTPUT_FILES)

    items = {row["item_id"]: row for row in read_jsonl(out / "items.jsonl")}
    assert sorted(items) == list(range(1, NUM_MOVIES + 1))
    assert items[1]["title"] == "Misérables, Les" and items[1]["year"] == 1995
    assert items[1]["text"] == "Misérables, Les (1995) [Drama, Musical]"

    test = read_jsonl(out / "test.jsonl")
    validation = read_jsonl(out / "validation.jsonl")
    train = read_jsonl(out / "train.jsonl")
    assert sorted(row["user_id"] for row in test) == KEPT_USERS
    assert sorted(row["user_id"] for row in validation) == KEPT_USERS
    # history_length 5: training positions 5 .. n-3, i.e. n - 7 per user
    per_user = {u: sum(row["user_id"] == u for row in train) for u in KEPT_USERS}
    assert per_user == {u: RATING_COUNTS[u] - 7 for u in KEPT_USERS}
    for row in test + validation + train:
        assert len(row["history"]) == 5 and len(row["candidates"]) == 4
        assert row["candidates"]["ABCD".index(row["answer"])] == row["target"]

    histories = json.loads((out / "histories.json").read_text())
    assert sorted(int(u) for u in histories) == KEPT_USERS
    assert {int(u): len(h) for u, h in histories.items()} == {
        u: RATING_COUNTS[u] - 2 for u in KEPT_USERS
    }
    assert "train: " in result.stdout and "test: 5" in result.stdout


# ------------------------------------------------------------------------- ML-100K subsample


def prepared_users(config: dict, out: Path) -> tuple[list[int], dict[str, bytes]]:
    counts = prepare_movielens(config, out)
    assert counts["users"] == counts["test"] == counts["validation"]
    histories = json.loads((out / "histories.json").read_text())
    test_users = sorted(row["user_id"] for row in read_jsonl(out / "test.jsonl"))
    assert sorted(int(u) for u in histories) == test_users
    return test_users, {name: (out / name).read_bytes() for name in OUTPUT_FILES}


@pytest.mark.slow
def test_ml100k_max_users_is_a_seeded_subset(tmp_path):
    config = validate_config({"movielens": {"max_users": 30}})
    assert config["movielens"]["source"] == "ml-100k"
    users, files = prepared_users(config, tmp_path / "a")
    assert len(users) == 30 and len(set(users)) == 30
    assert all(1 <= u <= 943 for u in users)

    again, files_again = prepared_users(config, tmp_path / "b")
    assert again == users
    assert files_again == files

    other = validate_config({"seed": 1, "movielens": {"max_users": 30}})
    other_users, _ = prepared_users(other, tmp_path / "c")
    assert len(other_users) == 30
    assert other_users != users
