"""The paper's figures 2-5 from the runs' files, every point a mean over seeds with its 95%
interval, each written as PNG and SVG with its numbers as a long-format table.

Runs are named as in :mod:`pgrpo.tables` (``MODEL/TASK/METHOD/SEED[/VARIANT]=PATH``):

* ``fig2_reward_curves``: ``metrics.jsonl`` of GRPO and P-GRPO; training reward per step
  (trailing mean over 10 steps), mean over seeds with a 95% band; one panel per model; below,
  the validation letter accuracy against updates where the runs scored it.
* ``fig3_accuracy_vs_candidates``: ``eval.json`` with variant ``c{N}`` (N candidates at test,
  models trained with 4); accuracy against N per method, chance 1/N dashed.
* ``fig4_cluster_ablation``: runs of the personalised methods (P-GRPO) with variant
  ``kmeans_k{K}`` / ``random_k{K}`` (eval and metrics), the reference method (GRPO) with the
  main partition. Left: test accuracy and final
  training reward against K (K-Means); right: K-Means against random clusters of the same
  sizes at each K trained with both.
* ``fig5_judge_winrates``: ``judge_winrates.json`` per seed and method; each method's win
  rate over the reference method (``--reference-method``: P-GRPO over GRPO) per preference
  group, one panel per task, 0.5 = no preference.
* ``fig6_training_dynamics``: ``metrics.jsonl`` of both methods on every task; the share of
  all-equal groups per step and the mean advantage per cluster (:mod:`pgrpo.dynamics`).
* ``fig7_group_size``: ``eval.json`` and ``metrics.jsonl`` of both methods on MovieLens with
  variant ``g{G}`` (trained with group size G); the paired difference and the all-equal
  share against G.

A figure never silently drops data: a missing file, a method without a point, seeds with
different numbers of steps or a NaN value stop it with a one-line error.

    python -m pgrpo.figures --name fig3_accuracy_vs_candidates --runs KEY=PATH ... \\
        --figure results/figures/fig3_accuracy_vs_candidates \\
        --table results/tables/fig3_accuracy_vs_candidates
"""

from __future__ import annotations

from collections import defaultdict
from functools import partial
from pathlib import Path

import numpy as np

from pgrpo.dynamics import fig6, fig7, validation_curves
from pgrpo.io import PgrpoError, run_cli, write_text
from pgrpo.methods import is_difference
from pgrpo.plotting import (
    BASE_COLOR,
    GREYS,
    WINDOW,
    band,
    errorbar,
    half_width,
    method_color,
    plot_bands,
    pyplot,
    save,
    seeds_label,
    step_curves,
    variant_number,
)
from pgrpo.tables import (
    Run,
    catalogue_parser,
    cells,
    method_label,
    parse_runs,
    trained_methods,
    write_tables,
)


def reward_curves(runs: list[Run]) -> dict[str, dict[str, np.ndarray]]:
    """model -> method -> (seeds x steps) smoothed training reward."""
    return step_curves(runs, "reward_mean")


def write_curves(curves: dict[str, dict[str, np.ndarray]], path: str | Path) -> None:
    """Figure 2's curves of one model as a CSV with one row per step (DVC's plots): ``step``,
    then per method its mean over seeds and the 95% half-width (empty with one seed)."""
    if len(curves) != 1:
        raise PgrpoError(f"{path}: curves of one model expected, got {sorted(curves)}")
    (methods,) = curves.values()
    names = sorted(methods)
    columns = {m: band(methods[m]) for m in names}
    rows = [",".join(["step", *names, *(f"{m}_ci95" for m in names)])]
    for step in range(len(columns[names[0]][0])):
        means = [f"{columns[m][0][step]:.6g}" for m in names]
        halves = [f"{columns[m][1][step]:.6g}" if len(methods[m]) > 1 else "" for m in names]
        rows.append(",".join([str(step), *means, *halves]))
    write_text(path, "\n".join(rows) + "\n")


def fig2(runs: list[Run], stem: str | Path) -> None:
    """Training reward per step; below it, when the runs scored their validation prompts
    (MovieLens, ``train.eval_every``), the validation letter accuracy against updates."""
    plt = pyplot()
    curves = reward_curves(runs)
    validation = validation_curves(runs)
    width = max(6.5, 5 * len(curves))
    rows = 2 if validation else 1
    fig, axes = plt.subplots(rows, len(curves), figsize=(width, 4 * rows), squeeze=False)
    for ax, model in zip(axes[-1], curves, strict=True):
        options = set()
        for method, (updates, values, k) in sorted(validation.get(model, {}).items()):
            options.add(k)
            mean, half = band(values)
            label = f"{method_label(method)} ({seeds_label(len(values))})"
            ax.errorbar(updates, mean, yerr=half, color=method_color(method), marker="o",
                        capsize=3, label=label)  # fmt: skip
        if rows == 2:
            for k in options:
                ax.axhline(1 / k, color="k", linestyle="--", linewidth=1, label=f"chance (1/{k})")
            ax.set_xlabel("updates")
            ax.set_ylabel("validation letter accuracy")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    for ax, (model, methods) in zip(axes[0], curves.items(), strict=True):
        plot_bands(ax, methods)
        ax.set_title(model)
        ax.set_xlabel("training step")
        ax.set_ylabel(f"training reward (trailing mean of {WINDOW})")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("MovieLens training reward (mean and 95% CI over seeds)", fontsize=11)
    fig.tight_layout()
    save(fig, stem)


def _points(rows: list[dict], metric: str, cluster: str = "all") -> dict[str, dict[str, dict]]:
    """method -> variant -> row, for one metric."""
    out: dict[str, dict[str, dict]] = defaultdict(dict)
    for r in rows:
        if r["metric"] == metric and r["cluster"] == cluster and not is_difference(r["method"]):
            out[r["method"]][r["variant"]] = r
    return out


REFERENCE_ROWS = ("popularity", "genre", "recent", "one_letter")


def fig3(rows: list[dict], stem: str | Path) -> None:
    """Letter accuracy (option scoring, position-balanced) against the candidate count: the
    base model and every method with intervals over seeds, the reference rows dashed."""
    points = _points(rows, "letter_accuracy")
    sizes = {v for p in points.values() for v in p}
    for method, p in points.items():
        if set(p) != sizes:
            missing = sorted(sizes - set(p), key=variant_number)
            raise PgrpoError(f"fig3: {method} has no letter accuracy for {', '.join(missing)}")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    solid = [m for m in ("base", *trained_methods(points)) if m in points]
    for method in solid:
        color = BASE_COLOR if method == "base" else method_color(method)
        errorbar(ax, points[method], method_label(method), color)
    for i, method in enumerate(m for m in REFERENCE_ROWS if m in points):
        xs = sorted(points[method], key=variant_number)
        ys = [points[method][v]["mean"] for v in xs]
        ax.plot([variant_number(v) for v in xs], ys, ":", marker="xs^v"[i % 4],
                color=GREYS[i % len(GREYS)], label=method_label(method))  # fmt: skip
    ns = sorted(variant_number(v) for v in sizes)
    ax.plot(ns, [1 / n for n in ns], "k--", linewidth=1, label="chance (1/N)")
    ax.set_xlabel("candidates at test time (trained with 4)")
    ax.set_ylabel("letter accuracy (position-balanced)")
    ax.set_title("Accuracy against candidate-set size (mean, 95% CI)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, stem)


def fig4(rows: list[dict], stem: str | Path) -> None:
    """The cluster ablation: each method trained with several K-Means cluster counts (the
    personalised ones, P-GRPO) against K, the others (GRPO) as lines at their own partition;
    right, K-Means against random clusters of the same sizes."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    acc, train = _points(rows, "accuracy"), _points(rows, "final_train_reward")

    def kmeans(points: dict, method: str) -> dict:
        return {v: r for v, r in points.get(method, {}).items() if v.startswith("kmeans")}

    ablated = [m for m in trained_methods(acc) if len(kmeans(acc, m)) >= 2]
    if not ablated:
        raise PgrpoError("fig4: needs a method's runs with at least two K-Means cluster counts")
    # A method's colour (pgrpo.plotting.method_color): accuracy solid, reward dashed.
    for method in ablated:
        name, color = method_label(method), method_color(method)
        errorbar(left, kmeans(acc, method), f"{name} test accuracy", color)
        errorbar(left, kmeans(train, method), f"{name} training reward (last 10%)", color,
                 marker="s", linestyle="--")  # fmt: skip
    for method in (m for m in trained_methods(acc) if m not in ablated):
        for v, r in acc[method].items():
            left.axhline(r["mean"], color=method_color(method), linestyle="--",
                         label=f"{method_label(method)} test accuracy ({v})")  # fmt: skip
    left.set_xscale("log", base=2)
    counts = sorted({variant_number(v) for m in ablated for v in kmeans(acc, m)})
    left.set_xticks(counts, [str(k) for k in counts])
    left.set_xlabel("number of user clusters K")
    left.set_ylabel("accuracy / reward")
    left.set_title("Cluster granularity")
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    bars = [(m, source) for m in ablated for source in ("kmeans", "random")]
    width = 0.8 / len(bars)
    ks: list[int] = []
    for j, (method, source) in enumerate(bars):
        random = {v for v in acc[method] if v.startswith("random")}
        if not random:
            raise PgrpoError(f"fig4: no {method_label(method)} run with random clusters")
        ks = sorted(variant_number(v) for v in random)
        cells_ = [acc[method].get(f"{source}_k{k}") for k in ks]
        name = "K-Means" if source == "kmeans" else "random"
        if any(c is None for c in cells_):
            raise PgrpoError(f"fig4: {name} {method_label(method)} is missing for one of K = {ks}")
        right.bar(np.arange(len(ks)) + width * (j + 0.5) - 0.4, [c["mean"] for c in cells_],
                  width, yerr=[half_width(c) for c in cells_], capsize=3,
                  color=method_color(method), hatch=None if source == "kmeans" else "//",
                  edgecolor="white", label=f"{method_label(method)}, {name}")  # fmt: skip
    right.set_xticks(range(len(ks)), [f"K={k}" for k in ks])
    right.set_ylabel("test accuracy")
    right.set_title("K-Means vs random clusters (same sizes)")
    right.legend(fontsize=8)
    fig.tight_layout()
    save(fig, stem)


def fig5(rows: list[dict], stem: str | Path, reference: str) -> None:
    """Each method's win rate over the reference method's answers per preference group,
    one panel per task, 0.5 = no preference."""
    by_task: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r["metric"] == "win_rate":
            by_task[r["task"]].append(r)
    if not by_task:
        raise PgrpoError("fig5: no judged pairs")
    plt = pyplot()
    fig, axes = plt.subplots(1, len(by_task), figsize=(5 * len(by_task), 4), squeeze=False)
    for ax, (task, cells_) in zip(axes[0], by_task.items(), strict=True):
        groups = list(dict.fromkeys(c["cluster"] for c in cells_))
        methods = trained_methods(c["method"] for c in cells_)
        width = 0.8 / len(methods)
        for i, method in enumerate(methods):
            by = {c["cluster"]: c for c in cells_ if c["method"] == method}
            xs = [j + width * (i + 0.5) - 0.4 for j, g in enumerate(groups) if g in by]
            mine = [by[g] for g in groups if g in by]
            ax.bar(xs, [c["mean"] for c in mine], width, yerr=[half_width(c) for c in mine],
                   capsize=3, color=method_color(method), label=method_label(method))  # fmt: skip
        ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
        ax.set_xticks(range(len(groups)), groups, rotation=45, ha="right")
        ax.set_ylim(0, 1)
        ax.set_title(f"{task}: against {method_label(reference)} "
                     f"({seeds_label(cells_[0]['n_seeds'])})")  # fmt: skip
        ax.set_ylabel("win rate over the reference (ties count half)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, stem)


CAPTIONS = {
    "fig2_reward_curves": "Figure 2 data: final training reward per model and method.",
    "fig3_accuracy_vs_candidates": "Figure 3 data: MovieLens test accuracy per candidate-set "
    "size (variant cN), models trained with 4 candidates; mean ± 95% CI over seeds.",
    "fig4_cluster_ablation": "Figure 4 data: the personalised methods (P-GRPO) on MovieLens with "
    "K-Means or random clusters (variant) of each size K; the reference method (GRPO) for "
    "comparison; mean ± 95% CI over seeds.",
    "fig5_judge_winrates": "Figure 5 data: the judge's win rate of each method over the "
    "reference method (in the default, P-GRPO over GRPO) per preference group (0.5 = no "
    "preference; ties count half); mean ± 95% CI over seeds.",
    "fig6_training_dynamics": "Figure 6 data: share of generation groups whose rewards are all "
    "equal (mean over steps) and mean advantage per cluster, per task and method; mean ± 95% "
    "CI over seeds.",
    "fig7_group_size": "Figure 7 data: every method on MovieLens trained with group size G "
    "(variant gG): letter accuracy, the share of all-equal groups and the paired difference "
    "from the reference method (P-GRPO − GRPO); mean ± 95% CI over seeds.",
}


def main(argv: list[str] | None = None) -> None:
    parser = catalogue_parser("Write one of the paper's figures.", CAPTIONS)
    parser.add_argument("--figure", help="output path without extension")
    parser.add_argument("--table", help="output path without extension")
    parser.add_argument("--curves", help="fig2 only: write the per-step curves (CSV) instead")
    args = parser.parse_args(argv)
    runs = parse_runs(args.runs)
    if args.curves:
        if args.name != "fig2_reward_curves":
            raise PgrpoError(f"--curves: only fig2_reward_curves has curves, not {args.name}")
        write_curves(reward_curves(runs), args.curves)
        return
    if not (args.figure and args.table):
        raise PgrpoError(f"{args.name}: --figure and --table are required (or --curves)")
    rows = cells(runs, args.reference_method)
    if args.name == "fig2_reward_curves":
        fig2(runs, args.figure)
    elif args.name == "fig6_training_dynamics":
        fig6([r for r in runs if r.path.name == "metrics.jsonl"], rows, args.figure)
    elif args.name == "fig7_group_size":
        fig7(rows, args.figure)
    else:
        {"fig3_accuracy_vs_candidates": fig3, "fig4_cluster_ablation": fig4,
         "fig5_judge_winrates": partial(fig5, reference=args.reference_method),
         }[args.name](rows, args.figure)  # fmt: skip
    write_tables(rows, args.table, CAPTIONS[args.name])
    print(Path(f"{args.table}.md").read_text())


if __name__ == "__main__":
    run_cli(main)
