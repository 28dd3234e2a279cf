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
    missing = tmp_path / "seed1" / "judge_winrates.json"
    done = run_entry(
        "pgrpo.figures", "--name", "fig5_judge_winrates",
        "--runs", f"m/personas/pgrpo/1={missing}",
        "--figure", str(tmp_path / "fig5"), "--table", str(tmp_path / "t"),
    )  # fmt: skip
    assert "seed1/judge_winrates.json: no such file" in one_error_line(done)
    assert list(tmp_path.iterdir()) == []


def test_win_rates_per_group_are_averaged_over_seeds(tmp_path):
    args = []
    for seed, rate in ((0, 0.5), (1, 0.75)):
        path = tmp_path / f"s{seed}" / "judge_winrates.json"
        path.parent.mkdir()
        path.write_text(json.dumps({"per_group": {"jazz": {"win_rate": rate}}}))
        args.append(f"m/personas/pgrpo/{seed}={path}")
    out = tmp_path / "out"
    done = run_entry("pgrpo.figures", "--name", "fig5_judge_winrates", "--runs", *args,
                     "--figure", str(out / "fig5"), "--table", str(out / "t"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    row = (out / "t.csv").read_text().splitlines()[1].split(",")
    assert row[:5] == ["personas", "m", "pgrpo", "jazz", "win_rate"]
    assert float(row[5]) == 0.625 and row[7] == "2"
    assert (out / "fig5.png").stat().st_size > 5_000 and (out / "fig5.svg").exists()
