"""The judge's entry points refuse inputs they cannot judge, with one line and no output."""

from __future__ import annotations

import json
import socket
import time

import pytest
import yaml
from entrypoints import one_error_line, run_entry
from localhost import ChatServer, serving


@pytest.mark.slow
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


@pytest.mark.slow
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


# ------------------------------------------------------------------ an unusable judge endpoint


def judge_cli(tmp_path, base_url: str):
    """``pgrpo.winrates`` with the http judge at ``base_url`` (0.5 s timeout, no retry) on
    one personas prompt; (the finished process, the output path)."""
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"judge": {
        "backend": "http", "base_url": base_url, "api_model": "m", "api_key_env": None,
        "timeout_s": 0.5, "retries": 0,
    }}))  # fmt: skip
    (tmp_path / "test.jsonl").write_text(
        json.dumps({"user_id": 1, "profile": ["I love jazz."], "request": "Music for tonight?"})
        + "\n"
    )
    for method, answer in (("pgrpo", "Some jazz by Miles Davis."), ("grpo", "Loud rock.")):
        (tmp_path / f"{method}.json").write_text(
            json.dumps({"answers": [{"user_id": 1, "group": "jazz", "answer": answer}]})
        )
    out = tmp_path / "w.json"
    done = run_entry(
        "pgrpo.winrates", "--config", str(config), "--task", "personas", "--data",
        str(tmp_path), "--first", f"pgrpo={tmp_path / 'pgrpo.json'}",
        "--second", f"grpo={tmp_path / 'grpo.json'}", "--model", str(tmp_path / "model"),
        "--out", str(out),
    )  # fmt: skip
    return done, out


@pytest.mark.slow
def test_a_refused_connection_is_one_line_naming_the_url(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done, out = judge_cli(tmp_path, f"http://127.0.0.1:{port}/v1")
    line = one_error_line(done)
    assert line.startswith(f"error: judge http://127.0.0.1:{port}/v1/chat/completions: "
                           "unreachable (")  # fmt: skip
    assert line.endswith(") after 1 attempt")
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "delay", "problem"),
    [
        ("prefer-jazz", 3.0, "no reply within judge.timeout_s=0.5 s after 1 attempt"),
        ("not-json", 0.0, "malformed reply b'<html>gateway</html>', expected JSON with "
                          "choices[0].message.content"),
        ("malformed", 0.0, "malformed reply b'{\"choices\": []}', expected JSON with "
                           "choices[0].message.content"),
        ("not-http", 0.0, "not an HTTP reply (BadStatusLine) after 1 attempt"),
        ("no-letter", 0.0, "reply names neither of A and B: 'Both answers are fine.', "
                           "expected one letter"),
    ],
    ids=["hangs", "not-json", "wrong-shape", "not-http", "no-letter"],
)  # fmt: skip
def test_a_hanging_or_garbage_endpoint_is_one_line_naming_the_url(tmp_path, mode, delay,
                                                                  problem):  # fmt: skip
    httpd = ChatServer()
    httpd.mode, httpd.delay = mode, delay
    with serving(httpd) as base:
        started = time.perf_counter()
        done, out = judge_cli(tmp_path, f"{base}/v1")
    assert one_error_line(done) == f"error: judge {base}/v1/chat/completions: {problem}"
    assert not out.exists()
    assert len(httpd.requests) == 1  # no pair was decided without a usable reply
    assert time.perf_counter() - started < 60
