"""The reviews task through the entry points the workflow calls: prepare (Goodreads
JSON-lines layout, merged rating groups) -> fit the rating model on the train split, which
refuses test reviews among its training reviews."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import yaml
from entrypoints import one_error_line, run_entry

from pgrpo.io import read_jsonl
from pgrpo.tasks.reviews import RatingModel, ReviewsTask

GOOD = ("A wonderful, moving book; I loved every page.", "Beautiful poems, a delight to read.",
        "One of the best collections I have read this year.")  # fmt: skip
BAD = ("Boring and badly written, I gave up.", "A waste of time, the worst book I read.",
       "Dull, flat verses; I regret buying it.")  # fmt: skip


@pytest.fixture(scope="module")
def goodreads(tmp_path_factory):
    """60 Goodreads-layout reviews (ratings 1, 2, 4, 5 + rows to skip) and a config for them."""
    root = tmp_path_factory.mktemp("reviews")
    rows = []
    for i in range(60):
        rating = (1, 2, 4, 5)[i % 4]
        text = (BAD if rating < 3 else GOOD)[i % 3] + f" (review {i})"
        rows.append({"review_id": f"r{i}", "user_id": f"u{i}", "book_id": str(100 + i % 7),
                     "rating": rating, "review_text": text})  # fmt: skip
    rows.append({"review_id": "x0", "user_id": "u", "book_id": "1", "rating": 0,
                 "review_text": "not rated"})  # fmt: skip
    rows.append({"review_id": "x1", "user_id": "u", "book_id": "1", "rating": 4, "review_text": ""})
    raw = root / "goodreads_reviews.json"
    raw.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump({"reviews": {
        "source": "goodreads", "path": str(raw), "rating_groups": [[1, 2], [3], [4, 5]],
        "test_fraction": 0.25, "rating_model_max_reviews": 30,
    }}))  # fmt: skip
    data = root / "prepared"
    done = run_entry("pgrpo.prepare", "--config", str(config), "--task", "reviews",
                     "--out", str(data))  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {"root": root, "config": config, "data": data, "stdout": done.stdout}


def test_prepare_splits_reviews_and_writes_their_rating_groups(goodreads):
    data = goodreads["data"]
    train, test = read_jsonl(data / "train.jsonl"), read_jsonl(data / "test.jsonl")
    assert (len(train), len(test)) == (45, 15)
    assert not {r["review_id"] for r in train} & {r["review_id"] for r in test}
    groups = json.loads((data / "groups.json").read_text())
    assert groups["labels"] == ["1-2", "3", "4-5"] and groups["num_clusters"] == 3
    assert groups["skipped_without_text"] == 2
    for row in train + test:
        expected = 0 if row["rating"] <= 2 else 2
        assert row["group"] == expected == groups["assignment"][str(row["user_id"])]
        assert row["group_label"] == groups["labels"][expected]
    assert groups["sizes"] == [30, 0, 30]
    assert sorted(r["user_id"] for r in train + test) == list(range(60))
    assert "skipped (no text or no rating): 2" in goodreads["stdout"]


@pytest.mark.slow
def test_rating_model_fits_the_train_split_and_reports_held_out_accuracy(goodreads, tmp_path):
    model, report = tmp_path / "rating_model.npz", tmp_path / "rating_model.json"
    done = run_entry(
        "pgrpo.rating_model", "--config", str(goodreads["config"]),
        "--data", str(goodreads["data"]), "--out", str(model), "--report", str(report),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(report.read_text())
    assert result["n_train"] == 30 and result["n_test"] == 15
    assert result["groups"] == ["1-2", "4-5"]  # only the groups present in training
    assert result["balanced_accuracy"] > 0.8  # the two kinds of text are easy to tell apart
    train_ids = {r["review_id"] for r in read_jsonl(goodreads["data"] / "train.jsonl")}
    with np.load(model, allow_pickle=False) as fitted:
        trained_on = set(fitted["trained_on"].tolist())
    assert len(trained_on) == 30 and trained_on <= train_ids


@pytest.mark.slow
def test_rating_model_refuses_a_test_review_in_training(goodreads, tmp_path):
    data = tmp_path / "leaky"
    data.mkdir()
    train = read_jsonl(goodreads["data"] / "train.jsonl")
    test = read_jsonl(goodreads["data"] / "test.jsonl")
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train + test[:1]))
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))
    model = tmp_path / "rating_model.npz"
    done = run_entry(
        "pgrpo.rating_model", "--config", str(goodreads["config"]), "--data", str(data),
        "--out", str(model), "--report", str(tmp_path / "r.json"),
    )  # fmt: skip
    assert "1 test reviews are also in train.jsonl" in one_error_line(done)
    assert not model.exists()


def test_goodreads_without_a_file_and_raw_for_another_task_are_named(goodreads, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"reviews": {"source": "goodreads"}}))
    done = run_entry("pgrpo.prepare", "--config", str(config), "--task", "reviews",
                     "--out", str(tmp_path / "out"))  # fmt: skip
    assert "reviews.path: give the Goodreads reviews file" in one_error_line(done)
    done = run_entry("pgrpo.prepare", "--config", str(config), "--task", "personas",
                     "--raw", "x.json", "--out", str(tmp_path / "out"))  # fmt: skip
    assert "--raw: the personas task generates its data, it reads no" in one_error_line(done)
    assert not (tmp_path / "out").exists()


def test_bad_rating_groups_are_named(goodreads, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"reviews": {"rating_groups": [[1, 2], [4, 5]]}}))
    done = run_entry("pgrpo.prepare", "--config", str(config), "--task", "reviews",
                     "--raw", str(goodreads["root"] / "missing.parquet"),
                     "--out", str(tmp_path / "out"))  # fmt: skip
    assert "reviews.rating_groups: every rating 1-5" in one_error_line(done)


def prepare_reviews(tmp_path, raw, source="goodreads"):
    """``pgrpo.prepare --task reviews --raw raw``; (the finished process, the output folder)."""
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"reviews": {"source": source}}))
    out = tmp_path / "out"
    done = run_entry("pgrpo.prepare", "--config", str(config), "--task", "reviews",
                     "--raw", str(raw), "--out", str(out))  # fmt: skip
    return done, out


def test_a_truncated_gzip_file_is_named(goodreads, tmp_path):
    whole = gzip.compress((goodreads["root"] / "goodreads_reviews.json").read_bytes())
    raw = tmp_path / "reviews.json.gz"
    raw.write_bytes(whole[: len(whole) // 2])  # a download cut short
    done, out = prepare_reviews(tmp_path, raw)
    line = one_error_line(done)
    assert line.startswith(f"error: {raw}: truncated or corrupt gzip file (")
    assert not out.exists()


def test_another_encoding_is_named_with_its_line(goodreads, tmp_path):
    lines = (goodreads["root"] / "goodreads_reviews.json").read_text().splitlines()
    lines[4] = json.dumps({"review_id": "z", "book_id": "1", "rating": 4,
                           "review_text": "Très beau"}, ensure_ascii=False)  # fmt: skip
    raw = tmp_path / "latin1.json"
    raw.write_bytes("\n".join(lines).encode("latin-1"))
    done, out = prepare_reviews(tmp_path, raw)
    assert one_error_line(done) == f"error: {raw}:5: not valid UTF-8 text"
    assert not out.exists()


def test_a_missing_column_is_named(tmp_path):
    import pandas as pd

    raw = tmp_path / "clothing.parquet"
    pd.DataFrame({"Clothing ID": [1], "Title": ["t"], "Review Text": ["Nice."],
                  "Division Name": ["d"], "Department Name": ["d"],
                  "Class Name": ["c"]}).to_parquet(raw)  # fmt: skip
    done, out = prepare_reviews(tmp_path, raw, source="clothing")
    assert one_error_line(done) == f"error: {raw}: missing column(s) Rating"
    assert not out.exists()


def test_no_review_left_after_skipping_is_an_error(tmp_path):
    raw = tmp_path / "unrated.json"
    rows = [{"review_id": f"r{i}", "book_id": "1", "rating": 0, "review_text": "fine"}
            for i in range(3)] + [{"review_id": "e", "book_id": "1", "rating": 5,
                                   "review_text": " "}]  # fmt: skip
    raw.write_text("".join(json.dumps(r) + "\n" for r in rows))
    done, out = prepare_reviews(tmp_path, raw)
    assert one_error_line(done) == (
        f"error: {raw}: no review with text and a rating 1-5 (4 rows skipped), expected at "
        "least one"
    )
    assert not out.exists()


def test_figure_6_names_the_rating_groups_as_the_evaluation_does(goodreads, tmp_path):
    """The training metrics number the clusters (advantage_mean/cluster_2); with the groups
    file among its runs, figure 6's table names them as the task's evaluation names a group."""
    data = goodreads["data"]
    args = [f"m/reviews/groups/-={data / 'groups.json'}"]
    for method in ("grpo", "pgrpo"):
        for seed in range(2):
            rows = [{"step": s, "reward_mean": 0.5, "zero_std_group_fraction": 0.0,
                     "advantage_mean/cluster_0": -0.5 - seed, "advantage_mean/cluster_2": 0.25}
                    for s in range(3)]  # fmt: skip
            path = tmp_path / method / str(seed) / "metrics.jsonl"
            path.parent.mkdir(parents=True)
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
            args.append(f"m/reviews/{method}/{seed}={path}")
    out = tmp_path / "out"
    done = run_entry("pgrpo.figures", "--name", "fig6_training_dynamics", "--runs", *args,
                     "--figure", str(out / "fig6"), "--table", str(out / "t"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    cells = {tuple(line.split(",")[2:5]): line.split(",")[5]
             for line in (out / "t.csv").read_text().splitlines()[1:]}  # fmt: skip
    task = ReviewsTask(RatingModel(np.zeros((1, 3)), np.zeros(3), [0, 1, 2], []))
    examples = {row["group"]: row for row in read_jsonl(data / "train.jsonl")}
    low, high = task.group_of(examples[0]), task.group_of(examples[2])
    assert (low, high) == ("rating 1-2", "rating 4-5")
    assert float(cells[("grpo", low, "advantage_mean")]) == pytest.approx(-1.0)
    assert float(cells[("pgrpo", high, "advantage_mean")]) == pytest.approx(0.25)
    assert not any(cluster in ("0", "2") for _, cluster, _ in cells)
