"""Figure 6: where the two advantages differ, measured in real training.

By Corollary 3.1, P-GRPO = (sigma_G / sigma_p) x GRPO + (mu_G - mu_p) / sigma_p: the methods
differ mostly on generation groups whose rewards are all equal, which GRPO gives zero
advantage and P-GRPO the offset of the group from its cluster's running mean. This figure
shows, from each training run's ``metrics.jsonl``:

* top, per task: the share of generation groups whose rewards are all equal, per step
  (trailing mean of 10 steps, TRL's ``frac_reward_zero_std``), mean over seeds with a 95%
  band, for GRPO and P-GRPO;
* bottom, per task: the mean advantage per cluster over the run (GRPO's is 0 by
  construction within every group; P-GRPO's is not), mean over seeds with 95% intervals.

Its table holds the run-level values (``all_equal_share``, ``advantage_mean`` per cluster)
with the paired P-GRPO - GRPO rows, as the catalogue computes them for tables 1-3.

    python -m pgrpo.figures --name fig6_training_dynamics --runs KEY=PATH ... \\
        --figure results/figures/fig6_training_dynamics \\
        --table results/tables/fig6_training_dynamics

Figure 7 is the same argument as an experiment: both methods trained on MovieLens with
several group sizes G (``figures.group_sizes``); with a binary reward the share of
all-equal groups is p^G + (1 - p)^G, so the methods should differ more as G shrinks.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from pgrpo.io import PgrpoError
from pgrpo.plotting import (
    WINDOW,
    errorbar,
    half_width,
    method_color,
    plot_bands,
    pyplot,
    save,
    step_curves,
    variant_number,
)
from pgrpo.tables import Run, differences, method_label, trained_methods

SHARE = "zero_std_group_fraction"
ADVANTAGE = "advantage_mean/cluster_"


def training_values(rows: list[dict]) -> list[tuple[str, str, float]]:
    """Run-level (metric, cluster, value) of one ``metrics.jsonl``: the mean share of
    all-equal groups over the steps, and each cluster's mean advantage over the steps it
    appeared in (runs logged before these were recorded give none)."""
    values = []
    if rows and all(SHARE in r for r in rows):
        values.append(("all_equal_share", "all", float(np.mean([r[SHARE] for r in rows]))))
    per_cluster: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        for key, value in r.items():
            if key.startswith(ADVANTAGE):
                per_cluster[key[len(ADVANTAGE) :]].append(value)
    values += [("advantage_mean", c, float(np.mean(v))) for c, v in per_cluster.items()]
    return values


def validation_curve(rows: list[dict], metric: str = "letter_accuracy"):
    """(updates, values, number of options) of a run's validation option scores (``val0/``
    before the first step, ``val/`` with ``val/updates`` after), or None when it logged none."""
    if not rows or f"val0/{metric}" not in rows[0]:
        return None
    points = [(0, rows[0][f"val0/{metric}"])]
    points += [(r["val/updates"], r[f"val/{metric}"]) for r in rows if "val/updates" in r]
    updates, values = zip(*points, strict=True)
    return np.array(updates), np.array(values), rows[0]["val0/num_options"]


def validation_curves(runs: list[Run]) -> dict[str, dict[str, tuple]]:
    """model -> method -> (updates, seeds x points, options) of the runs that logged
    validation scores; seeds scored at different updates are an error."""
    from pgrpo.io import read_jsonl

    found: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        curve = validation_curve(read_jsonl(run.path))
        if curve is not None:
            found[run.model][run.method].append(curve)
    out: dict[str, dict[str, tuple]] = {}
    for model, methods in found.items():
        for method, curves in methods.items():
            if len({tuple(u) for u, _, _ in curves}) != 1:
                raise PgrpoError(f"{model} {method}: seeds scored at different updates")
            values = np.stack([v for _, v, _ in curves])
            out.setdefault(model, {})[method] = (curves[0][0], values, curves[0][2])
    return out


def fig6(runs: list[Run], rows: list[dict], stem: str | Path) -> None:

    curves = step_curves(runs, SHARE, group=lambda run: run.task)
    plt = pyplot()
    tasks = sorted(curves)
    fig, axes = plt.subplots(2, len(tasks), figsize=(4.6 * len(tasks), 7), squeeze=False)
    for col, task in enumerate(tasks):
        ax = axes[0][col]
        plot_bands(ax, curves[task])
        ax.set_title(task)
        ax.set_xlabel("training step")
        ax.set_ylabel(f"all-equal groups (trailing mean of {WINDOW})")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax = axes[1][col]
        cells = [r for r in rows if r["task"] == task and r["metric"] == "advantage_mean"]
        methods = trained_methods(r["method"] for r in cells)
        clusters = sorted({r["cluster"] for r in cells}, key=lambda c: (len(c), c))
        width = 0.8 / max(1, len(methods))
        for i, method in enumerate(methods):
            by = {r["cluster"]: r for r in cells if r["method"] == method}
            xs = [j + i * width for j, c in enumerate(clusters) if c in by]
            ys = [by[c]["mean"] for c in clusters if c in by]
            err = [half_width(by[c]) for c in clusters if c in by]
            ax.bar(xs, ys, width, yerr=err, capsize=3, color=method_color(method),
                   label=method_label(method))  # fmt: skip
        ax.axhline(0, color="k", linewidth=0.8)
        ax.set_xticks([j + width * (len(methods) - 1) / 2 for j in range(len(clusters))])
        ax.set_xticklabels(clusters, fontsize=8, rotation=30)
        ax.set_xlabel("cluster")
        ax.set_ylabel("mean advantage over training")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    # Two lines when one column is too narrow for one.
    sep = " " if len(tasks) > 1 else "\n"
    fig.suptitle(f"Where the methods differ: all-equal groups{sep}and per-cluster advantage "
                 "(mean, 95% CI over seeds)", fontsize=11)  # fmt: skip
    fig.tight_layout()
    save(fig, stem)


def fig7(rows: list[dict], stem: str | Path) -> None:
    """Figure 7: the group-size ablation on MovieLens (variants ``g{G}``). Left: each
    method's letter accuracy minus the reference method's (P-GRPO - GRPO, paired by seed)
    against G; right: the share of all-equal groups of each method against G. Mean and 95%
    interval over seeds."""

    def points(method: str, metric: str) -> dict[str, dict]:
        return {r["variant"]: r for r in rows if r["method"] == method and r["metric"] == metric
                and r["cluster"] == "all"}  # fmt: skip

    names = [r["method"] for r in rows]
    curves = {d: points(d, "letter_accuracy") for d in differences(names)}
    curves = {d: c for d, c in curves.items() if len(c) >= 2}
    if not curves:
        raise PgrpoError(
            "fig7: a method's letter accuracy minus the reference method's is needed at 2 or "
            "more group sizes (both methods, 2+ common seeds)"
        )
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    methods = trained_methods(names)
    for d, curve in curves.items():
        errorbar(left, curve, method_label(d), method_color(d))
    left.axhline(0, color="k", linewidth=0.8)
    left.set_ylabel("letter accuracy difference (paired by seed)")
    for method in methods:
        share = points(method, "all_equal_share")
        if share:
            errorbar(right, share, method_label(method), method_color(method))
    right.set_ylabel("share of all-equal groups")
    right.set_ylim(-0.02, 1.02)
    for ax in (left, right):
        ax.set_xlabel("group size G")
        ax.set_xticks(sorted({variant_number(v) for c in curves.values() for v in c}))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("MovieLens: the methods against the group size (mean, 95% CI over seeds)",
                 fontsize=11)  # fmt: skip
    fig.tight_layout()
    save(fig, stem)
