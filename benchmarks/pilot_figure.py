"""The MovieLens pilot's curves in one figure, with the numbers printed as a table.

Left: the training reward of GRPO / P-GRPO runs (``metrics.jsonl``), as means over blocks of
``--block`` steps, with a conservative 95% interval that counts prompts, not answers; with
letter-balanced steps a content-blind policy earns exactly 1/k, so a curve above it is
learning. Right: the validation letter accuracy against the number of training prompts
seen: the runs' own validation scores (``val0/``, ``val/``) where they logged them, and the
supervised probe's curve (``benchmarks/probe_movielens.py --out``) with the binomial 95%
interval of its validation prompts.

    python benchmarks/pilot_figure.py --runs "GRPO lr 3e-4=OUT1/metrics.jsonl" \\
        "GRPO lr 1e-3=OUT2/metrics.jsonl" --probes "supervised lr 3e-4=probe.json" \\
        --prompts-per-step 4 --figure docs/figures/pilot_movielens
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pgrpo.dynamics import validation_curve
from pgrpo.io import read_jsonl
from pgrpo.plotting import pyplot, save


def _pairs(values: list[str]) -> list[tuple[str, Path]]:
    return [(label, Path(path)) for label, _, path in (v.rpartition("=") for v in values)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", nargs="*", default=[], help="LABEL=metrics.jsonl of a training")
    p.add_argument("--probes", nargs="*", default=[], help="LABEL=probe curve (.json)")
    p.add_argument("--prompts-per-step", type=int, default=4, help="of the training runs")
    p.add_argument("--block", type=int, default=20, help="steps per training-reward mean")
    p.add_argument("--chance", type=float, default=0.25)
    p.add_argument("--figure", required=True, help="output path without extension")
    args = p.parse_args()
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    print("| curve | points |\n|---|---|")
    for i, (label, path) in enumerate(_pairs(args.runs)):
        rows = read_jsonl(path)
        rewards = np.array([r["reward_mean"] for r in rows])
        blocks = [rewards[s : s + args.block].mean() for s in range(0, len(rewards), args.block)]
        ends = [min(s + args.block, len(rewards)) for s in range(0, len(rewards), args.block)]
        # A prompt's answers are correlated: a conservative 95% interval counts prompts only.
        half = [1.96 * np.sqrt(b * (1 - b) / (args.block * args.prompts_per_step)) for b in blocks]
        left.errorbar(ends, blocks, yerr=half, marker="o", capsize=3, color=f"C{i}", label=label)
        points = ", ".join(f"{e}: {b:.3f}" for e, b in zip(ends, blocks, strict=True))
        print(f"| {label}: training reward per {args.block} steps | {points} |")
        curve = validation_curve(rows)
        if curve is not None:
            seen = curve[0] * args.prompts_per_step
            right.plot(seen, curve[1], marker="o", color=f"C{i}", label=f"{label} (validation)")
    for j, (label, path) in enumerate(_pairs(args.probes)):
        data = json.loads(path.read_text())
        curve = data["curve"]
        seen = [c["step"] * data["args"]["prompts"] for c in curve]
        accuracy = [c["letter_accuracy"] for c in curve]
        n = data["args"]["eval_prompts"]
        half = [1.96 * np.sqrt(a * (1 - a) / n) for a in accuracy]
        right.errorbar(seen, accuracy, yerr=half, marker="s", linestyle="--", capsize=3,
                       color=f"C{j + 5}", label=label)  # fmt: skip
        points = ", ".join(f"{s}: {a:.3f}" for s, a in zip(seen, accuracy, strict=True))
        print(f"| {label}: validation letter accuracy by prompts seen | {points} |")
    for ax in (left, right):
        ax.axhline(args.chance, color="k", linestyle="--", linewidth=1, label="chance")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    left.set_xlabel("training step")
    left.set_ylabel(f"training reward (mean of {args.block} steps)")
    right.set_xlabel("training prompts seen")
    right.set_ylabel("validation letter accuracy")
    fig.suptitle("MovieLens pilot: is anything learned?", fontsize=11)
    fig.tight_layout()
    Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
    save(fig, args.figure)


if __name__ == "__main__":
    main()
