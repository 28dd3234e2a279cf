"""Pairwise judges: which of two answers fits a user better (the paper's win rates).

A judge backend answers one ordered question, "answer A or answer B?", for a user described
by ``context`` (the persona's profile, the review's rating). :func:`judge_pair` asks it in
both orders, so a judge that always picks the first (or second) position produces a tie, not
a win: an answer wins only if it is preferred in both orders.

Backends:

* :class:`LocalJudge`: a local causal LM (default: the base SmolLM2); it prefers the letter
  with the higher next-token log-probability after the question (deterministic, no parsing).
* :class:`HttpJudge`: any OpenAI-compatible chat-completions endpoint (the paper used
  GPT-OSS-120B). The API key is read from an environment variable and only sent in the
  ``Authorization`` header; it is never logged or stored. Timeouts, refused connections,
  replies that are not HTTP and HTTP 429/5xx are retried (``retries`` times, with backoff);
  a reply that is not valid JSON, lacks ``choices[0].message.content`` or names neither A
  nor B raises :class:`JudgeError`: no pair is ever decided silently, and the entry point
  stops with one line naming the URL (docs/errors.md).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from pgrpo.io import PgrpoError, read_json
from pgrpo.tasks.registry import TaskSpec, task_spec

QUESTION = (
    "You judge which answer suits a user better.\n"
    "About the user: {context}\n"
    "Request: {request}\n"
    "Answer A: {a}\n"
    "Answer B: {b}\n"
    "Which answer suits this user better? Reply with one letter, A or B."
)
_LETTER = re.compile(r"(?<![A-Za-z])([AB])(?![A-Za-z])")


class JudgeError(PgrpoError):
    """A judge could not decide a pair (unreachable, too slow, or an unusable reply)."""


def parse_choice(reply: str) -> str:
    """``"A"`` or ``"B"``: the first standalone letter A/B of ``reply``; JudgeError if none or
    if both appear as standalone letters (an ambiguous reply)."""
    letters = set(_LETTER.findall(reply.strip()))
    if len(letters) != 1:
        raise JudgeError(f"reply names {'both' if letters else 'neither'} of A and B: "
                         f"{reply[:80]!r}, expected one letter")  # fmt: skip
    return letters.pop()


def judge_pair(judge, context: str, request: str, first: str, second: str) -> float:
    """Score of ``first`` against ``second``: 1 (preferred in both orders), 0 (the other one
    preferred in both orders) or 0.5 (the orders disagree: position bias, or no preference)."""
    forward = judge.choose(context, request, first, second)  # "A" = first
    backward = judge.choose(context, request, second, first)  # "A" = second
    if forward == "A" and backward == "B":
        return 1.0
    if forward == "B" and backward == "A":
        return 0.0
    return 0.5


@dataclass
class WinRate:
    wins: int = 0
    ties: int = 0
    losses: int = 0

    @property
    def n(self) -> int:
        return self.wins + self.ties + self.losses

    @property
    def rate(self) -> float:
        """(wins + ties / 2) / pairs; 0.5 = no preference."""
        return (self.wins + 0.5 * self.ties) / self.n if self.n else float("nan")


def win_rates(judge, pairs: Iterable[tuple[str, str, str, str, str]]) -> dict[str, WinRate]:
    """Per group: how often the first answer beats the second. ``pairs`` yields
    (group, context, request, first answer, second answer)."""
    out: dict[str, WinRate] = {}
    for group, context, request, first, second in pairs:
        score = judge_pair(judge, context, request, first, second)
        cell = out.setdefault(group, WinRate())
        if score == 1.0:
            cell.wins += 1
        elif score == 0.0:
            cell.losses += 1
        else:
            cell.ties += 1
    return out


class LocalJudge:
    """A local causal LM compares the log-probabilities of "A" and "B" as its next token."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model.eval(), tokenizer
        ids = [tokenizer.encode(letter, add_special_tokens=False) for letter in ("A", "B")]
        if any(len(i) != 1 for i in ids):
            raise PgrpoError("judge: the tokenizer does not encode A and B as single tokens")
        self.letter_ids = [i[0] for i in ids]

    @torch.no_grad()
    def choose(self, context: str, request: str, a: str, b: str) -> str:
        messages = [{"role": "user", "content": QUESTION.format(
            context=context, request=request, a=a, b=b)}]  # fmt: skip
        text = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        ids = self.tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
        logits = self.model(input_ids=ids).logits[0, -1]
        score_a, score_b = logits[self.letter_ids].tolist()
        return "A" if score_a >= score_b else "B"


class HttpJudge:
    """An OpenAI-compatible ``/chat/completions`` endpoint as the judge."""

    def __init__(self, base_url: str, model: str, api_key_env: str | None = None,
                 timeout: float = 30.0, retries: int = 2, backoff: float = 1.0):  # fmt: skip
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.timeout, self.retries, self.backoff = model, timeout, retries, backoff
        self._key = None
        if api_key_env:
            self._key = os.environ.get(api_key_env)
            if not self._key:
                raise JudgeError(f"judge.api_key_env: environment variable {api_key_env} is unset")

    def __repr__(self) -> str:  # never shows the key
        return f"HttpJudge({self.url!r}, model={self.model!r})"

    def _post(self, body: bytes) -> bytes:
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return response.read()

    def complete(self, content: str) -> str:
        """The reply text to one user message; retries transient failures."""
        body = json.dumps({
            "model": self.model, "temperature": 0, "max_tokens": 8,
            "messages": [{"role": "user", "content": content}],
        }).encode()  # fmt: skip
        problem, attempts = "", self.retries + 1
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                raw = self._post(body)
                break
            except urllib.error.HTTPError as e:
                problem = f"HTTP {e.code}"
                if e.code != 429 and e.code < 500:
                    raise JudgeError(f"judge {self.url}: {problem}, expected 200 with a chat "
                                     "completion") from None  # fmt: skip
            except http.client.HTTPException as e:  # not HTTP, or a reply cut short
                problem = f"not an HTTP reply ({type(e).__name__})"
            except (TimeoutError, urllib.error.URLError, ConnectionError, OSError) as e:
                reason = getattr(e, "reason", e)
                problem = (
                    f"no reply within judge.timeout_s={self.timeout:g} s"
                    if "timed out" in str(reason)
                    else f"unreachable ({reason})"
                )
        else:
            raise JudgeError(
                f"judge {self.url}: {problem} after {attempts} attempt{'s' * (attempts > 1)}"
            ) from None
        try:
            return json.loads(raw)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise JudgeError(f"judge {self.url}: malformed reply {raw[:80]!r}, expected JSON "
                             "with choices[0].message.content") from None  # fmt: skip

    def choose(self, context: str, request: str, a: str, b: str) -> str:
        reply = self.complete(QUESTION.format(context=context, request=request, a=a, b=b))
        try:
            return parse_choice(reply)
        except JudgeError as e:
            raise JudgeError(f"judge {self.url}: {e}") from None


def make_judge(cfg: dict, base_model: str):
    """The judge the config ``judge`` section describes."""
    if cfg["backend"] == "http":
        if not cfg["base_url"] or not cfg["api_model"]:
            raise PgrpoError("judge: the http backend needs judge.base_url and judge.api_model")
        return HttpJudge(cfg["base_url"], cfg["api_model"], cfg["api_key_env"],
                         cfg["timeout_s"], cfg["retries"])  # fmt: skip
    from pgrpo.models import load_base_model, load_tokenizer

    folder = cfg["model"] or base_model
    return LocalJudge(load_base_model(folder), load_tokenizer(folder))


def evaluation_with_answers(path: str) -> dict:
    """An evaluation file that keeps its answers (``pgrpo.evaluate``)."""
    report = read_json(path)
    if "answers" not in report:
        raise PgrpoError(f"{path}: no answers (written by an older pgrpo.evaluate; re-run it)")
    return report


def judged_spec(name: str, config: dict) -> TaskSpec:
    """The task ``name``, which must be one whose answers the judge compares
    (``TaskSpec.judged``)."""
    spec = task_spec(name, config)
    if not spec.judged:
        raise PgrpoError(f"--task: the {name} task is not judged (its reward decides alone)")
    return spec


def add_judge_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments every judging entry point takes (pgrpo.winrates and pgrpo.agreement)."""
    parser.add_argument("--config", required=True)
    parser.add_argument("--task", required=True, help="a task whose answers are judged")
    parser.add_argument("--data", required=True, help="the task's prepared folder")
    parser.add_argument("--model", required=True, help="the policy's base model folder")
    parser.add_argument(
        "--reward-model", help="a task with a fitted reward: its rating model (.npz)"
    )
    parser.add_argument("--out", required=True)
