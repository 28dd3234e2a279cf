"""Entry point: win rates of one method's test answers over another's, per preference group.

Reads two evaluation files of the same task (their ``answers``, one per test prompt), pairs
the answers to the same prompt and asks the judge (config ``judge``) which suits the user
better, in both orders (:func:`pgrpo.judge.judge_pair`). Writes per group the wins, ties,
losses and the win rate (wins + ties / 2) / pairs of the first method. With ``--agreement``
(the judge's check against the reward, :mod:`pgrpo.agreement`), a judge that is not above
chance judges only ``judge.pairs_at_chance`` prompts, and the result says so.

    python -m pgrpo.winrates --config config.yaml --task personas --data resources/personas \\
        --first pgrpo=outputs/personas/pgrpo/eval.json \\
        --second grpo=outputs/personas/grpo/eval.json \\
        --model resources/models/smollm2-135m --out outputs/personas/judge_winrates.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from pgrpo.config import load_config
from pgrpo.io import PgrpoError, read_json, read_jsonl, run_cli, seeded_subset, write_json
from pgrpo.judge import (
    add_judge_arguments,
    evaluation_with_answers,
    judged_spec,
    make_judge,
    win_rates,
)


def _answers(value: str) -> tuple[str, dict[int, dict]]:
    name, sep, path = value.partition("=")
    if not sep:
        raise PgrpoError(f"expected METHOD=eval.json, got {value!r}")
    return name, {int(a["user_id"]): a for a in evaluation_with_answers(path)["answers"]}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Judge two methods' answers pairwise.")
    add_judge_arguments(parser)
    parser.add_argument("--first", required=True, help="METHOD=eval.json (the one that wins)")
    parser.add_argument("--second", required=True, help="METHOD=eval.json")
    parser.add_argument("--agreement", help="the judge's check (pgrpo.agreement); one not "
                        "above chance judges only judge.pairs_at_chance prompts")  # fmt: skip
    return parser.parse_args(argv)


def judged_users(config: dict, args, a: dict, b: dict, check: dict | None) -> list[int]:
    """The test users both methods answered, at most ``judge.max_pairs`` of them, and only
    ``judge.pairs_at_chance`` when the judge's check says it is not above chance."""
    cfg = config["judge"]
    users = sorted(a.keys() & b.keys())
    if not users:
        raise PgrpoError(f"{args.first} and {args.second} answer no common test prompt")
    users = seeded_subset(users, cfg["max_pairs"], [config["seed"], 19])
    if check is not None and not check["above_chance"]:
        users = seeded_subset(users, cfg["pairs_at_chance"], [config["seed"], 19])
    return users


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config = load_config(args.config)
    spec = judged_spec(args.task, config)
    cfg = config["judge"]
    torch.set_num_threads(config["train"]["threads"])
    started = time.perf_counter()
    (first, a), (second, b) = _answers(args.first), _answers(args.second)
    check = read_json(args.agreement) if args.agreement else None
    users = judged_users(config, args, a, b, check)
    task = spec.load(args.data, config, args.reward_model)
    examples = {e["user_id"]: e for e in read_jsonl(Path(args.data) / "test.jsonl")}
    judge = make_judge(cfg, args.model)

    def pairs():
        for user in users:
            context, request = task.judge_context(examples[user])
            yield a[user]["group"], context, request, a[user]["answer"], b[user]["answer"]

    rates = win_rates(judge, pairs())
    result = {
        "task": args.task, "first": first, "second": second,
        "judge": cfg["backend"] if cfg["backend"] == "http" else (cfg["model"] or args.model),
        "pairs": len(users),
        "judge_above_chance": None if check is None else check["above_chance"],
        "judge_agreement": None if check is None else check["agreement_rate"],
        "per_group": {g: {"wins": r.wins, "ties": r.ties, "losses": r.losses, "n": r.n,
                          "win_rate": r.rate} for g, r in sorted(rates.items())},
        "seconds": time.perf_counter() - started,
    }  # fmt: skip
    write_json(args.out, result)
    print(", ".join(f"{g}: {c['win_rate']:.2f}" for g, c in result["per_group"].items()))


if __name__ == "__main__":
    run_cli(main)
