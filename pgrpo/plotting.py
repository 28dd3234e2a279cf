"""Plotting shared by the figures (:mod:`pgrpo.figures`, :mod:`pgrpo.dynamics`): matplotlib
without a display, PNG + SVG written atomically, per-step curves of the runs' training
metrics (trailing means, seeds x steps), 95% bands and error bars over seeds.
"""

from __future__ import annotations

import re
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np

from pgrpo.io import PgrpoError, atomic_path, read_jsonl
from pgrpo.methods import BUILTIN, method_of
from pgrpo.stats import t_quantile
from pgrpo.tables import Run, method_label

WINDOW = 10
# Rows that are not methods: the base model in black, the reference rows in greys.
BASE_COLOR = "k"
GREYS = ("0.35", "0.5", "0.65", "0.8")


def method_color(name: str) -> str:
    """One colour per method in every figure and panel: the built-in methods in
    ``pgrpo.methods.BUILTIN``'s order (GRPO C0, P-GRPO C1, ...), any other name one of the
    palette's remaining colours by a hash of the name; a difference row takes its method's."""
    method = method_of(name)
    builtin = list(BUILTIN)
    if method in builtin:
        return f"C{builtin.index(method)}"
    return f"C{len(builtin) + zlib.crc32(method.encode()) % (10 - len(builtin))}"


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, stem: str | Path) -> None:
    for suffix in ("png", "svg"):
        with atomic_path(f"{stem}.{suffix}") as tmp:
            fig.savefig(tmp, format=suffix, dpi=120)
    pyplot().close(fig)


def seeds_label(n: int) -> str:
    return f"{n} seed" + ("s" if n != 1 else "")


def trailing_mean(values: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """Trailing mean over up to ``window`` values (shorter at the start)."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(0, idx - window)
    return (sums[idx] - sums[lo]) / (idx - lo)


def step_curves(runs: list[Run], metric: str, group=lambda run: run.model) -> dict:
    """``group(run)`` (default the model) -> method -> (seeds x steps) trailing mean of the
    per-step ``metric`` of each run's ``metrics.jsonl``."""
    curves: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        rows = read_jsonl(run.path)
        if not rows:
            raise PgrpoError(f"{run.path}: no training steps")
        if metric == "reward_mean" and "pairs" in rows[0]:
            continue  # GDPO's rewards are the base model's samples', not the policy's
        if any(metric not in r for r in rows):
            raise PgrpoError(f"{run.path}: no {metric} per step (retrain with this version)")
        curves[group(run)][run.method].append(trailing_mean(np.array([r[metric] for r in rows])))
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, methods in curves.items():
        for method, seeds in methods.items():
            if len({len(c) for c in seeds}) != 1:
                raise PgrpoError(f"{name} {method}: seeds trained for different numbers of steps")
            out.setdefault(name, {})[method] = np.stack(seeds)
    return out


def band(curves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over seeds (rows) and the 95% t half-width (0 with one seed)."""
    mean = curves.mean(axis=0)
    if len(curves) < 2:
        return mean, np.zeros_like(mean)
    return mean, t_quantile(len(curves)) * curves.std(axis=0, ddof=1) / np.sqrt(len(curves))


def plot_bands(ax, methods: dict[str, np.ndarray]) -> None:
    """Per method (sorted), the mean of its (seeds x steps) curves with a 95% band."""
    for method in sorted(methods):
        mean, half = band(methods[method])
        steps = np.arange(len(mean))
        label = f"{method_label(method)} ({seeds_label(len(methods[method]))})"
        color = method_color(method)
        ax.plot(steps, mean, color=color, linewidth=2, label=label)
        ax.fill_between(steps, mean - half, mean + half, color=color, alpha=0.2)


def half_width(row: dict) -> float:
    """A cell's error bar: its 95% half-width, 0 when undefined (one seed)."""
    return 0.0 if np.isnan(row["ci95"]) else row["ci95"]


def variant_number(variant: str) -> int:
    match = re.search(r"(\d+)$", variant)
    if not match:
        raise PgrpoError(f"variant {variant!r}: expected a name ending in a number (c8, kmeans_k8)")
    return int(match.group(1))


def errorbar(ax, points: dict[str, dict], label: str, color: str, marker: str = "o",
             linestyle: str = "-") -> None:  # fmt: skip
    xs = sorted(points, key=variant_number)
    ys = [points[v]["mean"] for v in xs]
    err = [half_width(points[v]) for v in xs]
    ax.errorbar([variant_number(v) for v in xs], ys, yerr=err, label=label, color=color,
                marker=marker, linestyle=linestyle, capsize=3)  # fmt: skip
