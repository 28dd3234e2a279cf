"""Entry point: does the judge agree with the task's reward? Measured before its win rates
are worth their time.

Pairs of answers to the same test prompt whose task rewards differ by at least
``judge.agreement_gap`` (drawn from the evaluations of the base model and the trained
policies, so the answers differ) are judged in both orders (:func:`pgrpo.judge.judge_pair`).
The judge *agrees* on a pair when it prefers the higher-reward answer in both orders,
*disagrees* when it prefers the other in both, and ties otherwise. The agreement rate
``(agree + ties / 2) / pairs`` is 0.5 for a judge that cannot tell the answers apart (or
always picks one position), 1 for one that ranks them as the reward does; its 95% interval
is the Wilson score interval of the decisive pairs' agreement share, mapped onto the rate.
The judge is *above chance* when the interval's lower end is above 0.5; with no pair whose
rewards differ that much (answers too alike to check), it is not shown above chance.

The judge rule reads the verdict: a judge at chance judges only ``judge.pairs_at_chance``
prompts per seed (figure 5 then says that a real judge is needed), instead of every prompt.

    python -m pgrpo.agreement --config config.yaml --task personas --data resources/personas \\
        --evaluations outputs/.../base/eval.json outputs/.../seed0/grpo/eval.json ... \\
        --model resources/models/smollm2-135m --out outputs/.../judge_agreement.json
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from pathlib import Path

import numpy as np
import torch

from pgrpo.config import load_config
from pgrpo.io import read_jsonl, run_cli, write_json
from pgrpo.judge import (
    add_judge_arguments,
    evaluation_with_answers,
    judge_pair,
    judged_spec,
    make_judge,
)


def reward_gap_pairs(reports: list[dict], gap: float, limit: int | None, seed) -> list[tuple]:
    """(user, higher answer, lower answer, reward gap) of every pair of answers to the same
    prompt, from different evaluations, whose rewards differ by at least ``gap``; a seeded
    choice of ``limit`` of them (all when None), in user order."""
    by_user: dict[int, list[dict]] = {}
    for report in reports:
        for answer in report["answers"]:
            by_user.setdefault(int(answer["user_id"]), []).append(answer)
    pairs = []
    for user, answers in sorted(by_user.items()):
        for x, y in itertools.combinations(answers, 2):
            high, low = (x, y) if x["reward"] >= y["reward"] else (y, x)
            if high["reward"] - low["reward"] >= gap and high["answer"] != low["answer"]:
                pairs.append((user, high["answer"], low["answer"], high["reward"] - low["reward"]))
    if limit is not None and len(pairs) > limit:
        keep = np.random.default_rng(seed).choice(len(pairs), size=limit, replace=False)
        pairs = [pairs[i] for i in sorted(keep)]
    return pairs


def wilson(successes: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score 95% interval of a proportion (``(0, 1)`` when ``n`` is 0)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def agreement(scores: list[float]) -> dict:
    """The agreement rate of per-pair judge scores (1 agree, 0 disagree, 0.5 tie), its 95%
    interval and the verdict. Ties carry no information on direction: the interval is the
    Wilson interval of the decisive pairs' agreement share d, mapped onto the rate
    ``0.5 + (d - 0.5) * decisive / n``, which contains 0.5 whenever d's interval does."""
    n = len(scores)
    agree, disagree = scores.count(1.0), scores.count(0.0)
    decisive = agree + disagree
    low, high = wilson(agree, decisive)
    share = decisive / n if n else 0.0
    rate = (agree + 0.5 * (n - decisive)) / n if n else 0.5
    interval = (0.5 + (low - 0.5) * share, 0.5 + (high - 0.5) * share)
    return {"pairs": n, "agree": agree, "disagree": disagree, "ties": n - decisive,
            "agreement_rate": rate, "ci95": list(interval),
            "above_chance": bool(interval[0] > 0.5)}  # fmt: skip


def main(argv: list[str] | None = None) -> None:

    parser = argparse.ArgumentParser(description="Measure the judge's agreement with the reward.")
    add_judge_arguments(parser)
    parser.add_argument("--evaluations", nargs="+", required=True, help="eval.json files")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    spec = judged_spec(args.task, config)
    cfg = config["judge"]
    torch.set_num_threads(config["train"]["threads"])
    started = time.perf_counter()
    reports = [evaluation_with_answers(path) for path in args.evaluations]
    pairs = reward_gap_pairs(
        reports, cfg["agreement_gap"], cfg["agreement_pairs"], [config["seed"], 23]
    )
    scores = []
    if pairs:  # none: nothing shows the judge above chance (the answers are too alike)
        task = spec.load(args.data, config, args.reward_model)
        examples = {e["user_id"]: e for e in read_jsonl(Path(args.data) / "test.jsonl")}
        judge = make_judge(cfg, args.model)
        scores = [judge_pair(judge, *task.judge_context(examples[user]), high, low)
                  for user, high, low, _ in pairs]  # fmt: skip
    result = {"task": args.task, "gap": cfg["agreement_gap"],
              "mean_reward_gap": float(np.mean([p[3] for p in pairs])) if pairs else None,
              **agreement(scores),
              "judge": cfg["backend"] if cfg["backend"] == "http" else (cfg["model"] or args.model),
              "seconds": time.perf_counter() - started}  # fmt: skip
    write_json(args.out, result)
    low, high = result["ci95"]
    verdict = "above chance" if result["above_chance"] else "not above chance"
    print(f"{args.task}: the judge agrees with the reward on {result['agreement_rate']:.3f} of "
          f"{result['pairs']} pairs (95% CI {low:.3f}-{high:.3f}; {result['ties']} ties): "
          f"{verdict}")  # fmt: skip


if __name__ == "__main__":
    run_cli(main)
