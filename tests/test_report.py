"""The evaluation's per-group report and the tables built from it, for the three tasks."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from entrypoints import one_error_line, run_entry

from pgrpo.evaluate import reward_report
from pgrpo.report import summary, table_rows


def test_reward_report_per_cluster_and_per_true_group():
    report = reward_report(
        rewards=[1.0, 0.0, 0.5, 0.5, 0.2, 0.4],
        usable=[True, True, True, False, True, True],
        clusters=[0, 0, 1, 1, 2, 2],
        num_clusters=4,
        groups=["a", "b", "a", "b", "a", "c"],
    )
    assert report["reward"] == pytest.approx(2.6 / 6)
    assert report["usable_rate"] == pytest.approx(5 / 6)
    assert report["per_cluster"] == {
        "0": {"reward": 0.5, "n": 2}, "1": {"reward": 0.5, "n": 2},
        "2": {"reward": pytest.approx(0.3), "n": 2},
    }  # fmt: skip
    assert report["worst_cluster_reward"] == pytest.approx(0.3)
    assert report["clusters_without_test_users"] == ["3"]
    assert report["per_group"]["a"] == {"reward": pytest.approx(1.7 / 3), "n": 3}
    assert (report["worst_group"], report["worst_group_reward"]) == ("b", 0.25)
    assert "per_group" not in reward_report([1.0], [True], [0], 1)


def evaluation(per_group: dict[str, tuple[float, int]], reward: float) -> dict:
    cells = {g: {"reward": r, "n": n} for g, (r, n) in per_group.items()}
    worst = min(cells, key=lambda g: cells[g]["reward"])
    return {"reward": reward, "n": sum(n for _, n in per_group.values()), "usable_rate": 0.9,
            "per_cluster": {"0": {"reward": reward, "n": 1}}, "worst_cluster_reward": reward,
            "per_group": cells, "worst_group": worst,
            "worst_group_reward": cells[worst]["reward"]}  # fmt: skip


METRICS = [{"step": s, "reward_mean": 0.1 * s} for s in range(10)]


def test_personas_columns_go_majority_first_with_the_worst_persona():
    evals = {
        "base": evaluation({"jazz": (0.1, 5), "rock": (0.3, 20), "pop": (0.2, 9)}, 0.25),
        "pgrpo": evaluation({"jazz": (0.4, 5), "rock": (0.35, 20), "pop": (0.5, 9)}, 0.4),
    }
    rows = table_rows(evals, {"pgrpo": METRICS}, "personas", {"cluster_ari": 0.8})
    assert list(rows[0])[:5] == ["method", "test_reward", "reward_rock", "reward_pop",
                                 "reward_jazz"]  # fmt: skip
    assert (rows[0]["worst_group"], rows[1]["worst_group"]) == ("jazz", "rock")
    assert rows[0]["final_train_reward"] is None
    assert rows[1]["final_train_reward"] == pytest.approx(0.9)  # mean of the last 10%
    assert rows[1]["cluster_ari"] == 0.8 and rows[1]["usable_rate"] == 0.9
    headline = summary(rows, "personas")["personas"]["P-GRPO"]
    assert headline["test_reward"] == 0.4 and headline["worst_group_reward"] == 0.35


def test_reviews_columns_follow_the_ratings_and_movielens_keeps_accuracy_names():
    ev = evaluation({"rating 5": (0.7, 50), "rating 1": (0.2, 4), "rating 3": (0.3, 9)}, 0.6)
    rows = table_rows({"grpo": ev}, {"grpo": METRICS}, "reviews")
    assert [c for c in rows[0] if c.startswith("reward_")] == [
        "reward_rating_1", "reward_rating_3", "reward_rating_5"]  # fmt: skip
    rows = table_rows({"grpo": ev}, {"grpo": METRICS}, "movielens")
    assert rows[0]["test_accuracy"] == 0.6 and rows[0]["accuracy_cluster_0"] == 0.6
    assert rows[0]["parse_rate"] == 0.9 and "reward_rating_1" not in rows[0]


def test_report_cli_writes_the_personas_table_and_names_a_clusters_file_without_ari(tmp_path):
    paths = {}
    for method, reward in (("base", 0.2), ("grpo", 0.3), ("pgrpo", 0.35)):
        paths[method] = tmp_path / f"{method}.json"
        paths[method].write_text(json.dumps(evaluation({"jazz": (reward, 3)}, reward)))
    metrics = tmp_path / "m.jsonl"
    metrics.write_text("".join(json.dumps(m) + "\n" for m in METRICS))
    clusters = tmp_path / "clusters.json"
    clusters.write_text(json.dumps({"num_clusters": 7, "adjusted_rand_index": 0.93}))
    args = ["--task", "personas", "--eval", *(f"{m}={p}" for m, p in paths.items()),
            "--metrics", f"grpo={metrics}", f"pgrpo={metrics}", "--table",
            str(tmp_path / "t"), "--figure", str(tmp_path / "f.png")]  # fmt: skip
    done = run_entry("pgrpo.report", *args, "--clusters", str(clusters))
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert [float(r["reward_jazz"]) for r in rows] == [0.2, 0.3, 0.35]
    assert {r["cluster_ari"] for r in rows} == {"0.93"}
    assert np.isclose(float(rows[2]["final_train_reward"]), 0.9)
    clusters.write_text(json.dumps({"num_clusters": 7}))
    (tmp_path / "t.csv").unlink()
    done = run_entry("pgrpo.report", *args, "--clusters", str(clusters))
    assert "clusters.json: no adjusted_rand_index" in one_error_line(done)
    assert not (tmp_path / "t.csv").exists()
