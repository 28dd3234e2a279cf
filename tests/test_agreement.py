"""The judge's agreement with the task reward (pgrpo.agreement), against a real
chat-completions server on localhost, and what the win rates do with a judge at chance."""

from __future__ import annotations

import json

import pytest
import yaml
from entrypoints import run_entry
from localhost import ChatServer, serving

from pgrpo.agreement import agreement, reward_gap_pairs, wilson

JAZZ, ROCK = "Try some jazz by Miles Davis.", "Play loud rock with big guitar riffs."


def test_wilson_interval_matches_the_textbook_value():
    # 8 of 10: Wilson 95% interval (0.4902, 0.9433) (Newcombe 1998, method 3).
    assert wilson(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)
    nothing = agreement([])
    assert nothing["pairs"] == 0 and nothing["agreement_rate"] == 0.5
    assert not nothing["above_chance"]


def test_ties_pull_the_rate_to_one_half_and_never_make_a_judge_above_chance():
    assert agreement([0.5] * 50) == {**agreement([0.5] * 50), "agreement_rate": 0.5,
                                     "above_chance": False, "ties": 50}  # fmt: skip
    sure = agreement([1.0] * 30)
    assert sure["agreement_rate"] == 1.0 and sure["above_chance"] and sure["ci95"][0] > 0.85
    mixed = agreement([1.0] * 6 + [0.0] * 4 + [0.5] * 10)
    assert mixed["agreement_rate"] == pytest.approx(0.55) and not mixed["above_chance"]
    low, high = mixed["ci95"]
    assert low < 0.5 < high


def test_pairs_come_from_different_evaluations_with_a_wide_reward_gap():
    a = {"answers": [{"user_id": 1, "answer": "x", "reward": 0.9},
                     {"user_id": 2, "answer": "y", "reward": 0.5}]}  # fmt: skip
    b = {"answers": [{"user_id": 1, "answer": "z", "reward": 0.2},
                     {"user_id": 2, "answer": "w", "reward": 0.4}]}  # fmt: skip
    c = {"answers": [{"user_id": 1, "answer": "x", "reward": 0.1}]}  # same text: never a pair
    pairs = reward_gap_pairs([a, b, c], gap=0.3, limit=None, seed=0)
    assert [(u, hi, lo) for u, hi, lo, _ in pairs] == [(1, "x", "z")]
    assert pairs[0][3] == pytest.approx(0.7)
    assert len(reward_gap_pairs([a, b], gap=0.05, limit=1, seed=0)) == 1


def _task_files(tmp_path, users: int):
    data = tmp_path / "personas"
    data.mkdir()
    rows = [{"user_id": u, "profile": ["I love music."], "request": "What should I play?"}
            for u in range(users)]  # fmt: skip
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    good = {"answers": [{"user_id": u, "group": "jazz", "answer": JAZZ, "reward": 0.9}
                        for u in range(users)]}  # fmt: skip
    bad = {"answers": [{"user_id": u, "group": "jazz", "answer": ROCK, "reward": 0.1}
                       for u in range(users)]}  # fmt: skip
    for name, report in (("good", good), ("bad", bad)):
        (tmp_path / f"{name}.json").write_text(json.dumps(report))
    return data


@pytest.mark.parametrize(("mode", "above"), [("prefer-jazz", True), ("always-first", False)])
def test_the_check_and_the_win_rates_of_a_judge_at_chance(tmp_path, mode, above):
    data = _task_files(tmp_path, users=40)
    httpd = ChatServer()
    httpd.mode = mode
    with serving(httpd) as base:
        config = tmp_path / "c.yaml"
        config.write_text(yaml.safe_dump({"judge": {
            "backend": "http", "base_url": f"{base}/v1", "api_model": "m", "api_key_env": None,
            "agreement_pairs": 25, "pairs_at_chance": 7}}))  # fmt: skip
        common = ["--config", str(config), "--task", "personas", "--data", str(data),
                  "--model", str(tmp_path / "unused")]  # fmt: skip
        good, bad, check_file = (str(tmp_path / n) for n in ("good.json", "bad.json", "a.json"))
        done = run_entry("pgrpo.agreement", *common, "--evaluations", good, bad,
                         "--out", check_file)  # fmt: skip
        assert done.returncode == 0, done.stderr
        check = json.loads((tmp_path / "a.json").read_text())
        assert check["pairs"] == 25 and check["above_chance"] is above
        assert check["agreement_rate"] == (1.0 if above else 0.5)
        assert len(httpd.requests) == 50  # both orders of every pair
        done = run_entry("pgrpo.winrates", *common, "--first", f"pgrpo={good}",
                         "--second", f"grpo={bad}", "--agreement", check_file,
                         "--out", str(tmp_path / "w.json"))  # fmt: skip
        assert done.returncode == 0, done.stderr
    rates = json.loads((tmp_path / "w.json").read_text())
    assert rates["pairs"] == (40 if above else 7) and rates["judge_above_chance"] is above
