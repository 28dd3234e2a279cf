"""Table 4's scorer: seconds per model and agreement with the earlier in-house scorer.

Scores the base model with ``pgrpo.general.general_report`` (lm-evaluation-harness, through
``pgrpo/harness.py``) on the config's benchmarks, a seeded subset of ``--passages`` LAMBADA
passages and ``--questions`` multiple-choice questions, and, with ``--against COMMIT``, with the
``general_report`` of ``pgrpo/general.py`` at that commit (read with ``git show``; 6306dc2 is
the last commit with the in-house scorer), alternating the two ``--repeats`` times. Prints the
seconds of each, the LM losses and their largest per-passage difference, and whether every
question gets the same acc and acc_norm.

    ./with-venv python benchmarks/general_scorer.py --precision bf16 --passages 100 \\
        --questions 100 --against 6306dc2
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types

import numpy as np
import torch

from pgrpo import general
from pgrpo.config import load_config
from pgrpo.models import load_base_model, load_tokenizer


def earlier_scorer(commit: str) -> types.ModuleType:
    """``pgrpo/general.py`` as it was at ``commit``, loaded as a module."""
    source = subprocess.run(["git", "show", f"{commit}:pgrpo/general.py"], check=True,
                            capture_output=True, text=True).stdout  # fmt: skip
    module = types.ModuleType(f"general_{commit}")
    exec(compile(source, f"{commit}:pgrpo/general.py", "exec"), module.__dict__)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--model", default="resources/models/smollm2-135m")
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--passages", type=int, default=100)
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--against", default=None, help="commit of the earlier scorer")
    args = parser.parse_args()
    config = load_config(args.config, {
        "model": {"precision": args.precision},
        "general": {"max_passages": args.passages, "mc_questions": args.questions},
    })  # fmt: skip
    torch.set_num_threads(args.threads)
    tokenizer = load_tokenizer(args.model)
    model = load_base_model(args.model, args.precision, config["model"]["attention"]).eval()
    scorers = {"lm-eval": lambda: general.general_report(model, tokenizer, config)}
    if args.against:
        old = earlier_scorer(args.against)
        scorers[args.against] = lambda: old.general_report(model, tokenizer, config, False)
    reports = {}
    for repeat in range(args.repeats):
        for name, score in scorers.items():
            started = time.perf_counter()
            reports[name] = score()
            print(f"{name:>10} repeat {repeat}: {time.perf_counter() - started:.1f} s")
    for name, report in reports.items():
        acc, norm = report["mc_accuracy"], report["mc_accuracy_norm"]
        print(f"{name:>10}: LM loss {report['lm_loss']:.6f} nats/token, acc {acc:.3f}, "
              f"acc_norm {norm:.3f}")  # fmt: skip
    if args.against:
        new, old = reports["lm-eval"], reports[args.against]
        diff = np.abs(np.subtract(new["lm_loss_per_passage"], old["lm_loss_per_passage"]))
        print(f"largest per-passage LM loss difference: {diff.max():.2g} nats/token; same "
              f"tokens: {new['lm_tokens_per_passage'] == old['lm_tokens_per_passage']}; same "
              f"acc on every question: {new['mc_correct'] == old['mc_correct']}; same acc_norm: "
              f"{new['mc_correct_norm'] == old['mc_correct_norm']}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
