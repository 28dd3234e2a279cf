"""Tests for pgrpo.heuristics: model-free MovieLens recommenders, position-balanced."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from pgrpo import heuristics
from pgrpo.io import PgrpoError, read_json, run_cli
from pgrpo.tasks.movielens_heuristics import (
    HEURISTICS,
    heuristic_scores,
    heuristics_report,
    item_popularity,
    picks,
)

# item id -> (year, genres)
ITEMS = {
    1: (1990, ["Drama"]),
    2: (2000, ["Comedy"]),
    3: (None, ["Action", "Comedy"]),
    4: (2000, ["Horror"]),
    5: (1985, ["Drama", "Action"]),
    6: (1970, ["Comedy"]),
}
ITEM_ROWS = {i: {"year": y, "genres": g} for i, (y, g) in ITEMS.items()}


def example(user, history, candidates, answer, position=5):
    return {"user_id": user, "position": position, "history": history,
            "target": candidates["ABCD".index(answer)], "candidates": candidates,
            "answer": answer}  # fmt: skip


def credit(scores, right):
    """Each example's credit of the top-scored candidates (ties share it)."""
    top = picks(scores)
    return top[np.arange(len(top)), right] / top.sum(1)


def test_one_letter_scores_exactly_one_in_k_on_unbalanced_answers():
    answers = "A" * 7 + "B" * 2 + "C" * 3 + "D"
    examples = [example(u % 2, [1], [1, 2, 3, 4], a) for u, a in enumerate(answers)]
    report = heuristics_report(examples, ITEM_ROWS, {}, {0: 0, 1: 1})
    one = report["heuristics"]["one_letter"]
    assert one["letter_accuracy"]["all"] == pytest.approx(0.25, abs=1e-12)
    assert one["per_position"]["0"]["chosen"] == 1.0
    assert answers.count("A") / len(answers) != pytest.approx(0.25)  # a plain mean is not 1/k
    assert report["n"] == 13 and report["num_candidates"] == [4]
    assert set(report["heuristics"]) == {"one_letter", "recent", "genre", "popularity"}


def test_recent_picks_the_newest_and_a_missing_year_is_the_oldest():
    examples = [
        example(1, [1], [1, 5, 2, 6], "C"),  # 2000 is newest: right
        example(1, [1], [2, 1, 3, 4], "A"),  # 2000 twice: ties share the credit
        example(1, [1], [3, 6, 5, 1], "A"),  # no year loses to 1970
    ]
    scores = heuristic_scores(examples, ITEM_ROWS, {})["recent"]
    assert credit(scores, np.array([2, 0, 0])).tolist() == [1.0, 0.5, 0.0]
    assert picks(scores)[2].tolist() == [0, 0, 0, 1]


def test_genre_counts_history_movies_sharing_a_genre():
    # history: Drama, Comedy, Drama+Action
    examples = [example(1, [1, 2, 5], [1, 2, 3, 4], "C")]
    scores = heuristic_scores(examples, ITEM_ROWS, {})["genre"]
    # Drama: items 1, 5; Comedy: item 2; Action+Comedy: items 2, 5; Horror: none
    assert scores[0].tolist() == [2, 1, 2, 0]
    assert credit(scores, np.array([2])).tolist() == [0.5]


def test_popularity_counts_users_of_the_training_histories():
    histories = {1: [2, 3], 2: [2], 3: [2, 4, 2], 4: []}
    assert item_popularity(histories) == {2: 3, 3: 1, 4: 1}  # a repeat counts once
    examples = [example(9, [1], [1, 3, 2, 4], "C"), example(9, [1], [1, 3, 6, 4], "B")]
    scores = heuristic_scores(examples, ITEM_ROWS, histories)["popularity"]
    assert scores.tolist() == [[0, 1, 3, 1], [0, 1, 0, 1]]
    assert credit(scores, np.array([2, 1])).tolist() == [1.0, 0.5]


def test_bad_examples_are_one_line_errors():
    with pytest.raises(PgrpoError, match="user 1, position 5: candidate 99 is not in items"):
        heuristic_scores([example(1, [1], [1, 2, 99, 4], "A")], ITEM_ROWS, {}, "t.jsonl")
    with pytest.raises(PgrpoError, match="history movie 77 is not in items"):
        heuristic_scores([example(1, [77], [1, 2, 3, 4], "A")], ITEM_ROWS, {})
    mixed = [example(1, [1], [1, 2, 3, 4], "A"), example(1, [1], [1, 2, 3], "A")]
    with pytest.raises(PgrpoError, match=r"t.jsonl: examples with \[3, 4\] candidates"):
        heuristic_scores(mixed, ITEM_ROWS, {}, "t.jsonl")
    with pytest.raises(PgrpoError, match="answer 'AB' is not one of A..D"):
        heuristic_scores([example(1, [1], [1, 2, 3, 4], "A") | {"answer": "AB"}], ITEM_ROWS, {})


def write_prepared(tmp_path, tests, max_users=None):
    data = tmp_path / "movielens"
    data.mkdir(exist_ok=True)
    rows = [{"item_id": i, "title": f"Movie {i}", "year": y, "genres": g, "text": f"Movie {i}"}
            for i, (y, g) in ITEMS.items()]  # fmt: skip
    (data / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (data / "histories.json").write_text(json.dumps({"1": [2, 1], "2": [2, 5], "3": [4]}))
    (data / "test.jsonl").write_text("".join(json.dumps(e) + "\n" for e in tests))
    clusters = tmp_path / "clusters.json"
    clusters.write_text(json.dumps({"num_clusters": 2, "assignment": {"1": 0, "2": 1, "4": 1},
                                    "sizes": [1, 2]}))  # fmt: skip
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"seed": 0, "evaluation": {"max_users": max_users}}))
    out = tmp_path / "out" / "c4.json"
    argv = ["--config", str(config), "--data", str(data), "--clusters", str(clusters),
            "--out", str(out)]  # fmt: skip
    return argv, out


TESTS = [
    example(1, [1, 5], [6, 2, 4, 1], "B"),  # popularity: 2 (2 users); recent: 2 = 4 (2000)
    example(2, [2, 6], [2, 3, 1, 4], "A"),  # genre: 2 = 3 (Comedy); recent: 2 = 4
    example(3, [1], [1, 2, 3, 4], "A"),  # user 3 has no cluster: left out
    example(4, [1, 5], [5, 4, 1, 6], "C"),  # genre: 5 = 1 (Drama); popularity: 5 = 4 = 1
]


def test_cli_writes_the_report_of_the_clusters_users(tmp_path, capsys):
    argv, out = write_prepared(tmp_path, TESTS)
    heuristics.main(argv)
    report = read_json(out)
    assert report["task"] == "movielens" and report["n"] == 3 and report["num_candidates"] == [4]
    rows = report["heuristics"]
    assert rows["one_letter"]["letter_accuracy"]["all"] == pytest.approx(1 / 3)  # A, B, C right
    assert rows["popularity"]["letter_accuracy"]["all"] == pytest.approx((1 + 1 + 1 / 3) / 3)
    chosen = (1 + 0 + 1 / 3) / 3  # the share of the picks on B
    assert rows["popularity"]["per_position"]["1"] == pytest.approx(
        {"n": 1, "accuracy": 1.0, "chosen": chosen}
    )
    assert rows["genre"]["letter_accuracy"]["all"] == pytest.approx((0 + 0.5 + 0.5) / 3)
    # cluster 1: the mean over its right positions A (0.5) and C (0)
    assert rows["recent"]["letter_accuracy"]["per_cluster"] == {"0": 0.5, "1": 0.25}
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == list(HEURISTICS)
    assert lines[0].startswith("one_letter: letter accuracy 0.333 on 3 test examples")


def test_cli_takes_the_evaluation_subset_of_users(tmp_path):
    argv, out = write_prepared(tmp_path, TESTS, max_users=2)
    heuristics.main(argv)
    assert read_json(out)["n"] == 2


def test_cli_bad_candidate_is_a_one_line_error_and_writes_nothing(tmp_path, capsys):
    argv, out = write_prepared(tmp_path, [*TESTS[:3], example(4, [1], [5, 4, 42, 6], "C")])
    with pytest.raises(SystemExit) as exit_info:
        run_cli(heuristics.main, argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert "test.jsonl: user 4, position 5: candidate 42 is not in items.jsonl" in err
    assert not out.exists()
