"""The judge's entry points refuse inputs they cannot judge, with one line and no output."""

from __future__ import annotations

import json

import yaml
from entrypoints import one_error_line, run_entry


def test_an_evaluation_without_answers_is_named(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({}))
    old = tmp_path / "old_eval.json"
    old.write_text(json.dumps({"reward": 0.5, "per_group": {}}))
    out = tmp_path / "w.json"
    done = run_entry(
        "pgrpo.winrates", "--config", str(config), "--task", "personas", "--data",
        str(tmp_path), "--first", f"pgrpo={old}", "--second", f"grpo={old}",
        "--model", str(tmp_path / "model"), "--out", str(out),
    )  # fmt: skip
    assert "old_eval.json: no answers" in one_error_line(done)
    assert not out.exists()


def test_the_http_judge_needs_its_endpoint(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"judge": {"backend": "http"}}))
    answers = tmp_path / "eval.json"
    answers.write_text(json.dumps({"answers": [{"user_id": 1, "group": "g", "answer": "a"}]}))
    (tmp_path / "test.jsonl").write_text(json.dumps({"user_id": 1}) + "\n")
    done = run_entry(
        "pgrpo.winrates", "--config", str(config), "--task", "personas", "--data",
        str(tmp_path), "--first", f"pgrpo={answers}", "--second", f"grpo={answers}",
        "--model", str(tmp_path / "model"), "--out", str(tmp_path / "w.json"),
    )  # fmt: skip
    assert "judge.base_url and judge.api_model" in one_error_line(done)


def test_the_figure_needs_every_win_rate_file(tmp_path):
    done = run_entry(
        "pgrpo.figure_winrates", "--winrates", f"personas={tmp_path / 'missing.json'}",
        "--figure", str(tmp_path / "fig5"), "--table", str(tmp_path / "t"),
    )  # fmt: skip
    assert "missing.json: file not found" in one_error_line(done)
    assert list(tmp_path.iterdir()) == []
