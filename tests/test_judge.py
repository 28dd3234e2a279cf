"""Pairwise judges: both orders are asked, so position bias gives ties; the HTTP backend
against a real chat-completions server on localhost (slow, malformed, refused, retried)."""

from __future__ import annotations

import socket

import pytest
from localhost import ChatServer, serving

from pgrpo.judge import HttpJudge, JudgeError, judge_pair, parse_choice, win_rates


@pytest.fixture
def server():
    httpd = ChatServer()
    with serving(httpd) as base:
        yield httpd, f"{base}/v1"


JAZZ, ROCK = "Try some jazz by Miles Davis.", "Play loud rock with big guitar riffs."


def test_both_orders_are_asked_and_a_consistent_preference_wins(server, monkeypatch):
    httpd, url = server
    monkeypatch.setenv("TEST_JUDGE_KEY", "sk-test-123")
    judge = HttpJudge(url, "judge-model", api_key_env="TEST_JUDGE_KEY", timeout=5)
    assert judge_pair(judge, "likes jazz", "music?", JAZZ, ROCK) == 1.0
    assert judge_pair(judge, "likes jazz", "music?", ROCK, JAZZ) == 0.0
    firsts = [r["body"]["messages"][0]["content"].split("Answer A: ")[1][:10]
              for r in httpd.requests[:2]]  # fmt: skip
    assert firsts == [JAZZ[:10], ROCK[:10]]  # the same pair, in both orders
    assert {r["path"] for r in httpd.requests} == {"/v1/chat/completions"}
    assert {r["auth"] for r in httpd.requests} == {"Bearer sk-test-123"}
    assert httpd.requests[0]["body"]["model"] == "judge-model"
    assert "sk-test-123" not in repr(judge)


def test_a_position_biased_judge_gives_ties_not_wins(server):
    httpd, url = server
    httpd.mode = "always-first"
    judge = HttpJudge(url, "m", timeout=5)
    rates = win_rates(judge, [("jazz", "likes jazz", "q", JAZZ, ROCK),
                              ("rock", "likes rock", "q", ROCK, JAZZ)])  # fmt: skip
    assert [(r.wins, r.ties, r.losses, r.rate) for r in rates.values()] == [(0, 1, 0, 0.5)] * 2


def test_win_rates_per_group(server):
    _, url = server
    judge = HttpJudge(url, "m", timeout=5)
    pairs = [("jazz fans", "c", "q", JAZZ, ROCK)] * 3 + [("rock fans", "c", "q", ROCK, JAZZ)] * 2
    rates = win_rates(judge, pairs)
    assert (rates["jazz fans"].wins, rates["jazz fans"].rate) == (3, 1.0)
    assert (rates["rock fans"].losses, rates["rock fans"].rate) == (2, 0.0)


def test_transient_server_errors_are_retried(server):
    httpd, url = server
    httpd.failures_left = 2
    judge = HttpJudge(url, "m", timeout=5, retries=2, backoff=0.01)
    assert judge.choose("c", "q", JAZZ, ROCK) == "A"
    assert len(httpd.requests) == 3
    httpd.failures_left = 3  # more than the retries: an error, no choice
    with pytest.raises(JudgeError, match=r"/v1/chat/completions: HTTP 503 after 3 attempts$"):
        judge.choose("c", "q", JAZZ, ROCK)
    assert len(httpd.requests) == 6


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "delay", "message"),
    [("malformed", 0.0, "malformed reply"), ("not-json", 0.0, "malformed reply"),
     ("prefer-jazz", 2.0, r"no reply within judge.timeout_s=0.5 s after 2 attempts")],
)  # fmt: skip
def test_slow_or_malformed_replies_raise_never_decide(server, mode, delay, message):
    httpd, url = server
    httpd.mode, httpd.delay = mode, delay
    judge = HttpJudge(url, "m", timeout=0.5, retries=1, backoff=0.01)
    with pytest.raises(JudgeError, match=message):
        judge_pair(judge, "c", "q", JAZZ, ROCK)


def test_a_refused_connection_names_the_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    judge = HttpJudge(f"http://127.0.0.1:{port}/v1", "m", timeout=2, retries=1, backoff=0.01)
    with pytest.raises(JudgeError, match=rf"127.0.0.1:{port}/v1/chat/completions: unreachable"):
        judge.choose("c", "q", JAZZ, ROCK)


def test_missing_api_key_and_reply_parsing(monkeypatch):
    monkeypatch.delenv("UNSET_JUDGE_KEY", raising=False)
    with pytest.raises(JudgeError, match="UNSET_JUDGE_KEY is unset"):
        HttpJudge("http://127.0.0.1:1/v1", "m", api_key_env="UNSET_JUDGE_KEY")
    assert parse_choice(" B") == "B" and parse_choice("Answer: A.") == "A"
    for reply in ("", "both A and B", "Neither", "AB"):
        with pytest.raises(JudgeError):
            parse_choice(reply)


@pytest.mark.slow
def test_local_judge_reads_the_letters_logits_and_ties_identical_answers(tmp_path):
    import torch

    from pgrpo.judge import QUESTION, LocalJudge
    from pgrpo.models import load_base_model, load_tokenizer, materialize_model

    materialize_model("tiny", tmp_path / "tiny")
    tokenizer, model = load_tokenizer(tmp_path / "tiny"), load_base_model(tmp_path / "tiny")
    judge = LocalJudge(model, tokenizer)
    choice = judge.choose("likes jazz", "music?", JAZZ, ROCK)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTION.format(
            context="likes jazz", request="music?", a=JAZZ, b=ROCK)}],
        tokenize=False, add_generation_prompt=True,
    )  # fmt: skip
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1]
    a, b = (logits[tokenizer.encode(x, add_special_tokens=False)[0]] for x in "AB")
    assert choice == ("A" if a >= b else "B")
    # The same answer in both positions: whatever the model's position bias, a tie.
    assert judge_pair(judge, "likes jazz", "music?", JAZZ, JAZZ) == 0.5
