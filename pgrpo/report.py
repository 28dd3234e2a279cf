"""Entry point: a task's results table and reward-curve figure, from earlier rules' files.

Nothing is recomputed here: the table reads the evaluation JSONs (and, for personas, the
clusters' adjusted Rand index; for reviews, the rating model's held-out accuracy) and the
figure reads the training metrics written by ``pgrpo.train``.

    python -m pgrpo.report [--task movielens] --eval base=E0.json grpo=E1.json \
        pgrpo=E2.json --metrics grpo=M1.jsonl pgrpo=M2.jsonl --table results/tables/movielens \
        --figure results/figures/movielens_reward_curves.png [--summary S.json] \
        [--clusters clusters.json] [--rating-model rating_model.json]

Columns: MovieLens, test accuracy overall and per cluster, worst cluster, parse rate;
personas, test reward overall and per true persona (majority first), worst persona, usable
rate, the clusters' ARI against the personas; reviews, test reward overall and per rating
group (in rating order), worst group, usable rate, the rating model's held-out (balanced)
accuracy. Every table also has the final training reward (mean of the last 10% of steps).
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

import numpy as np

from pgrpo.io import PgrpoError, atomic_path, read_json, read_jsonl, run_cli, write_json, write_text

METHOD_LABELS = {"base": "Base model", "grpo": "GRPO", "pgrpo": "P-GRPO"}


def final_reward(metrics: list[dict], fraction: float = 0.1) -> float:
    """Mean training reward over the last ``fraction`` of steps (at least one step)."""
    if not metrics:
        raise PgrpoError("training metrics are empty")
    tail = max(1, round(len(metrics) * fraction))
    return float(np.mean([m["reward_mean"] for m in metrics[-tail:]]))


def _groups_by_size(evals: dict[str, dict], key: str) -> list[str]:
    """The groups of ``key`` (per_cluster / per_group) over all evaluations, largest first."""
    sizes: dict[str, int] = {}
    for ev in evals.values():
        for name, cell in ev[key].items():
            sizes[name] = max(sizes.get(name, 0), cell["n"])
    return sorted(sizes, key=lambda g: (-sizes[g], g))


def table_rows(
    evals: dict[str, dict], metrics: dict[str, list[dict]], task: str = "movielens",
    extra: dict | None = None,
) -> list[dict]:  # fmt: skip
    """One row per method (see the module docstring for the columns of each task);
    ``extra`` columns (ARI, rating-model accuracy) are repeated on every row."""
    rows = []
    if task == "movielens":
        clusters = sorted({k for e in evals.values() for k in e["per_cluster"]}, key=int)
    elif task == "reviews":  # rating groups in rating order
        groups = sorted({g for e in evals.values() for g in e["per_group"]})
    else:
        groups = _groups_by_size(evals, "per_group")
    for method, ev in evals.items():
        row = {"method": METHOD_LABELS.get(method, method)}
        if task == "movielens":
            row["test_accuracy"] = ev["reward"]
            for k in clusters:
                cell = ev["per_cluster"].get(k)
                row[f"accuracy_cluster_{k}"] = cell["reward"] if cell else float("nan")
            row["worst_cluster_accuracy"] = ev["worst_cluster_reward"]
        else:
            row["test_reward"] = ev["reward"]
            for g in groups:
                cell = ev["per_group"].get(g)
                name = g.replace(" ", "_")
                row[f"reward_{name}"] = cell["reward"] if cell else float("nan")
            row["worst_group"] = ev["worst_group"]
            row["worst_group_reward"] = ev["worst_group_reward"]
        row["final_train_reward"] = final_reward(metrics[method]) if method in metrics else None
        row["parse_rate" if task == "movielens" else "usable_rate"] = ev["usable_rate"]
        row["n_test"] = ev["n"]
        rows.append({**row, **(extra or {})})
    return rows


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def write_table(rows: list[dict], stem: str | Path) -> None:
    """``stem``.csv (full precision) and ``stem``.md (3 decimals)."""
    columns = list(rows[0])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({c: ("" if r[c] is None else r[c]) for c in columns} for r in rows)
    write_text(f"{stem}.csv", buffer.getvalue())
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in columns) + " |" for r in rows]
    write_text(f"{stem}.md", "\n".join(lines) + "\n")


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over up to ``window`` values (shorter at the start)."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(0, idx - window)
    return (sums[idx] - sums[lo]) / (idx - lo)


TITLES = {
    "movielens": ("MovieLens next-item prediction", "accuracy of sampled answers"),
    "personas": ("Seven personas", "style + genre score"),
    "reviews": ("Review generation", "rating-model probability of the rating"),
}


def plot_reward_curves(
    metrics: dict[str, list[dict]], path: str | Path, window: int = 10, task: str = "movielens"
) -> None:
    """Training reward per step (faint) and its trailing mean (bold), one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (method, rows) in enumerate(metrics.items()):
        if not rows:
            raise PgrpoError(f"no training metrics for {method}: cannot plot its reward curve")
        steps = np.array([r["step"] for r in rows])
        reward = np.array([r["reward_mean"] for r in rows])
        color = f"C{i}"
        ax.plot(steps, reward, color=color, alpha=0.25, linewidth=1)
        label = f"{METHOD_LABELS.get(method, method)} (mean of last {window})"
        ax.plot(steps, moving_average(reward, window), color=color, linewidth=2, label=label)
    ax.set_xlabel("training step")
    title, reward = TITLES[task]
    ax.set_ylabel(f"mean reward ({reward})")
    ax.set_title(f"{title}: training reward")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=120)
    plt.close(fig)


def summary(rows: list[dict], task: str = "movielens") -> dict:
    """Headline numbers per method, for `dvc metrics diff` across versions."""
    keys = ("test_accuracy", "test_reward", "worst_cluster_accuracy", "worst_group_reward",
            "final_train_reward", "parse_rate", "usable_rate", "cluster_ari",
            "rating_model_balanced_accuracy")  # fmt: skip
    return {task: {r["method"]: {k: r[k] for k in keys if r.get(k) is not None} for r in rows}}


def _pairs(values: list[str], flag: str) -> dict[str, Path]:
    out = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep:
            raise PgrpoError(f"{flag}: expected NAME=PATH, got {value!r}")
        out[name] = Path(path)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a task's table and figure.")
    parser.add_argument("--task", choices=sorted(TITLES), default="movielens")
    parser.add_argument("--eval", nargs="+", required=True, help="METHOD=eval.json")
    parser.add_argument("--metrics", nargs="+", required=True, help="METHOD=metrics.jsonl")
    parser.add_argument("--table", required=True, help="output path without extension")
    parser.add_argument("--figure", required=True)
    parser.add_argument("--summary", help="output JSON of headline metrics (DVC metrics)")
    parser.add_argument("--clusters", help="personas: the clusters JSON (its ARI is reported)")
    parser.add_argument("--rating-model", help="reviews: the rating model's report JSON")
    args = parser.parse_args(argv)
    evals = {m: read_json(p) for m, p in _pairs(args.eval, "--eval").items()}
    metrics = {m: read_jsonl(p) for m, p in _pairs(args.metrics, "--metrics").items()}
    extra = {}
    if args.clusters:
        clusters = read_json(args.clusters)
        if "adjusted_rand_index" not in clusters:
            raise PgrpoError(f"{args.clusters}: no adjusted_rand_index (cluster with --labels)")
        extra["cluster_ari"] = clusters["adjusted_rand_index"]
    if args.rating_model:
        rating = read_json(args.rating_model)
        extra["rating_model_balanced_accuracy"] = rating["balanced_accuracy"]
        extra["rating_model_accuracy"] = rating["accuracy"]
    rows = table_rows(evals, metrics, args.task, extra)
    plot_reward_curves(metrics, args.figure, task=args.task)
    write_table(rows, args.table)
    if args.summary:
        write_json(args.summary, summary(rows, args.task))
    print(Path(f"{args.table}.md").read_text())


if __name__ == "__main__":
    run_cli(main)
