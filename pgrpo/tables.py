"""The paper's tables in long format, every cell a mean over seeds with a 95% interval.

A *run* is one file written by an earlier rule, named by a key
``MODEL/TASK/METHOD/SEED[/VARIANT]`` (``SEED`` is ``-`` for the base model, which decodes
greedily and has no seed; ``VARIANT`` is a candidate-set size ``c8`` or a cluster partition
``kmeans_k8``). Its kind comes from its file name: ``eval*.json`` (:mod:`pgrpo.evaluate`),
``metrics.jsonl`` (:mod:`pgrpo.train`: the final training reward, the share of all-equal
groups and the mean advantage per cluster, :func:`pgrpo.dynamics.training_values`),
``general.json`` (:mod:`pgrpo.general`),
``judge_winrates.json`` (:mod:`pgrpo.winrates`), ``heuristics*.json`` (the MovieLens reference
rows of :mod:`pgrpo.heuristics`, one method per heuristic, key method ``heuristics``),
``rating_model.json`` (its held-out accuracy) and a clusters file ``clusters/*.json`` (its
adjusted Rand index against the true personas).

Each run gives per-seed *values* (metric, cluster, value); values of the same
(task, model, method, cluster, metric[, variant]) over seeds become one *cell*
(:func:`pgrpo.stats.mean_ci95`). Tables are written as ``.csv`` (columns
``task, model, method, cluster, metric, mean, ci95, n_seeds, mdd``), ``.md`` and ``.tex``
(one pivot per metric, clusters as columns, ``mean ± ci95``), with a row ``<method>-<reference>``
(``pgrpo-grpo``) for every trained method but the reference (``train.reference_method``): the
paired per-seed difference with its minimum detectable difference (``mdd``: 80% power,
two-sided 0.05, :func:`pgrpo.stats.minimum_detectable_difference`), flagged with it when its
interval contains 0. Where a table has groups, the column ``gap`` is the best group's value
minus the worst's (per seed, then over seeds): a method that narrows it treats the groups more
evenly. The entry point that writes the paper's tables is
:mod:`pgrpo.catalogue`; :mod:`pgrpo.figures` writes each figure's numbers the same way.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pgrpo.io import PgrpoError, read_json, read_jsonl, write_text
from pgrpo.methods import ROW_LABELS, difference, is_difference, label
from pgrpo.stats import (
    Interval,
    format_cell,
    mean_ci95,
    minimum_detectable_difference,
    paired_difference,
)

COLUMNS = ("task", "model", "method", "cluster", "metric", "mean", "ci95", "n_seeds", "mdd")
# The reference method of the difference rows when a table is not told otherwise.
REFERENCE = "grpo"
# Share of the last training steps whose mean reward is the "final training reward".
FINAL_FRACTION = 0.1


@dataclass(frozen=True)
class Run:
    model: str
    task: str
    method: str
    seed: str
    variant: str
    path: Path


def parse_runs(values: list[str]) -> list[Run]:
    """``MODEL/TASK/METHOD/SEED[/VARIANT]=PATH`` arguments; a missing file is an error."""
    runs = []
    for value in values:
        key, sep, path = value.partition("=")
        parts = key.split("/")
        if not sep or len(parts) not in (4, 5):
            raise PgrpoError(
                f"--runs: expected MODEL/TASK/METHOD/SEED[/VARIANT]=PATH, got {value!r}"
            )
        if not Path(path).exists():
            raise PgrpoError(f"{path}: no such file (run {key}): cannot build a table without it")
        runs.append(Run(*parts[:4], parts[4] if len(parts) == 5 else "", Path(path)))
    if not runs:
        raise PgrpoError("--runs: no runs given")
    return runs


def final_reward(metrics: list[dict], fraction: float = FINAL_FRACTION) -> float:
    """Mean training reward over the last ``fraction`` of steps (at least one step)."""
    if not metrics:
        raise PgrpoError("training metrics are empty")
    tail = max(1, round(len(metrics) * fraction))
    return float(np.mean([m["reward_mean"] for m in metrics[-tail:]]))


def eval_values(report: dict) -> list[tuple[str, str, float]]:
    """(metric, cluster, value) of one evaluation: a multiple-choice task's accuracy and
    parse rate (its report names ``num_candidates``), a free-text task's reward and usable
    rate; per true group where the task knows the users' groups (persona, rating group), else
    per cluster; overall and in the worst cell."""
    choice = "num_candidates" in report
    metric, usable = ("accuracy", "parse_rate") if choice else ("reward", "usable_rate")
    cells = report.get("per_group") or report["per_cluster"]
    values = [(metric, "all", report["reward"]), (usable, "all", report["usable_rate"])]
    values += [(metric, str(name), cell["reward"]) for name, cell in cells.items()]
    values += extremes(metric, [cell["reward"] for cell in cells.values()])
    return values + choice_values(report.get("choices"))


def extremes(metric: str, per_group: list[float]) -> list[tuple[str, str, float]]:
    """The worst group's value and, with two groups or more, the gap between the best group
    and the worst."""
    values = [(metric, "worst", min(per_group))]
    if len(per_group) >= 2:
        values.append((metric, "gap", max(per_group) - min(per_group)))
    return values


def choice_values(choices: dict | None) -> list[tuple[str, str, float]]:
    """(metric, cluster, value) of a multiple-choice evaluation's option scoring
    (:mod:`pgrpo.choices`): letter accuracy and the right letter's probability overall, per
    cluster and in the worst cluster; the mass on the letters overall."""
    if choices is None:
        return []
    values = [("letter_mass", "all", choices["letter_mass"]["all"])]
    for metric in ("letter_accuracy", "correct_probability"):
        cell = choices[metric]
        values.append((metric, "all", cell["all"]))
        values += [(metric, c, v) for c, v in cell["per_cluster"].items()]
        values += extremes(metric, list(cell["per_cluster"].values()))
    return values


def heuristic_values(report: dict) -> list[tuple[str, str, float, str]]:
    """(metric, cluster, value, method) of the MovieLens reference rows
    (:mod:`pgrpo.heuristics`), one method per heuristic: a heuristic's answer is its pick, so
    its accuracy is its letter accuracy."""
    values = []
    for name in report["heuristics"]:  # in the order pgrpo.heuristics wrote them
        choices = report["heuristics"][name]
        for metric, cluster, value in choice_values(choices):
            if metric == "letter_accuracy":
                values.append(("accuracy", cluster, value, name))
            if metric != "letter_mass":  # always 1: a heuristic always names an option
                values.append((metric, cluster, value, name))
    return values


GENERAL_METRICS = ("lm_loss", "perplexity", "mc_accuracy", "mc_accuracy_norm")


def run_values(run: Run) -> list[tuple]:
    """(metric, cluster, value) of one run's file, by its kind; a file of several methods (the
    reference rows) adds the method to each."""
    name = run.path.name
    if name == "metrics.jsonl":
        from pgrpo.dynamics import training_values  # it draws with this module's labels

        rows = read_jsonl(run.path)
        if rows and "pairs" in rows[0]:  # GDPO: its rewards are the base model's samples'
            pairs = sum(r["pairs"] for r in rows)
            margin = sum(r["pair_reward_margin"] * r["pairs"] for r in rows) / max(pairs, 1)
            return [("dpo_pairs", "all", pairs), ("dpo_pair_margin", "all", margin),
                    *training_values(rows)]  # fmt: skip
        return [("final_train_reward", "all", final_reward(rows)), *training_values(rows)]
    data = read_json(run.path)
    if name.startswith("eval"):
        return eval_values(data)
    if name == "general.json":
        missing = [m for m in GENERAL_METRICS if m not in data]
        if missing:
            raise PgrpoError(f"{run.path}: missing {', '.join(missing)}")
        return [(m, "all", float(data[m])) for m in GENERAL_METRICS]
    if name == "rating_model.json":
        return [("rating_model_accuracy", "all", data["accuracy"]),
                ("rating_model_balanced_accuracy", "all", data["balanced_accuracy"])]  # fmt: skip
    if name == "groups.json":  # names the cluster numbers of the others (group_names)
        return []
    if run.path.parent.name == "clusters":
        if "adjusted_rand_index" not in data:
            raise PgrpoError(f"{run.path}: no adjusted_rand_index (cluster with --labels)")
        return [("cluster_ari", "all", data["adjusted_rand_index"])]
    if name.startswith("heuristics"):
        return heuristic_values(data)
    if name == "judge_winrates.json":
        return [("win_rate", g, c["win_rate"]) for g, c in data["per_group"].items()]
    kinds = (
        "eval*.json, metrics.jsonl, general.json, heuristics*.json, judge_winrates.json, "
        "rating_model.json"
    )
    raise PgrpoError(f"{run.path}: unknown kind of run file (expected {kinds} or clusters/*.json)")


# Training metrics logged per cluster number (``advantage_mean/cluster_3``); an evaluation
# names its groups ("rating 4"), and a task whose groups are given names the numbers so too.
NUMBERED_BY_CLUSTER = ("advantage_mean",)


def group_names(runs: list[Run]) -> dict[str, list[str]]:
    """{task: the name of each cluster number} from the runs' given-groups files
    (``groups.json``: the partition's ``method`` and ``labels``, e.g. ``rating`` and ``1``:
    "rating 1", as the task's evaluation names the group)."""
    names = {}
    for run in runs:
        if run.path.name == "groups.json":
            data = read_json(run.path)
            names[run.task] = [f"{data['method']} {label}" for label in data["labels"]]
    return names


def cells(runs: list[Run], reference: str = REFERENCE) -> list[dict]:
    """Long-format rows: one per (task, model, method, variant, cluster, metric) over seeds,
    then the paired difference ``<method>-<reference>`` of every other method wherever it
    and ``reference`` have 2+ common seeds (the base model and the reference rows have none:
    they are not seeded)."""
    by_key: dict[tuple, dict[str, float]] = defaultdict(dict)
    names = group_names(runs)
    for run in runs:
        for metric, cluster, value, *method in run_values(run):
            method = method[0] if method else run.method
            if metric in NUMBERED_BY_CLUSTER and run.task in names:
                cluster = names[run.task][int(cluster)]
            key = (run.task, run.model, method, run.variant, cluster, metric)
            if run.seed in by_key[key]:
                raise PgrpoError(f"{run.path}: run {key} seed {run.seed} given twice")
            by_key[key][run.seed] = float(value)
    rows = [_row(key, mean_ci95(seeds.values())) for key, seeds in by_key.items()]
    for (task, model, method, variant, cluster, metric), seeds in by_key.items():
        other = by_key.get((task, model, reference, variant, cluster, metric))
        if method != reference and other and len(seeds.keys() & other.keys()) >= 2:
            common = seeds.keys() & other.keys()
            diff = paired_difference({s: seeds[s] for s in common}, {s: other[s] for s in common})
            name = difference(method, reference)
            rows.append(_row((task, model, name, variant, cluster, metric), diff))
    return rows


def _row(key: tuple, interval: Interval) -> dict:
    task, model, method, variant, cluster, metric = key
    return {"task": task, "model": model, "method": method, "variant": variant,
            "cluster": cluster, "metric": metric, "mean": interval.mean,
            "ci95": interval.ci95, "n_seeds": interval.n,
            "mdd": minimum_detectable_difference(interval) if is_difference(method)
            else math.nan}  # fmt: skip


def trained_methods(names) -> list[str]:
    """The trained methods among table rows' methods (not the base model, a reference row or
    a difference), in their first order."""
    names = dict.fromkeys(names)
    return [m for m in names if m not in ROW_LABELS and not is_difference(m)]


def differences(names) -> list[str]:
    """The difference rows among table rows' methods, in their first order."""
    return [m for m in dict.fromkeys(names) if is_difference(m)]


def method_label(name: str) -> str:
    """How tables and figures name a method, a difference row or another row."""
    return label(name, ROW_LABELS)


def interval_of(row: dict) -> Interval:
    return Interval(row["mean"], row["ci95"], row["n_seeds"])


def _cluster_order(names: set[str]) -> list[str]:
    def key(name: str):
        special = {"all": (0, 0, ""), "worst": (2, 0, ""), "gap": (3, 0, "")}
        if name in special:
            return special[name]
        return (1, int(name), "") if name.isdigit() else (1, 10**9, name)

    return sorted(names, key=key)


def pivots(rows: list[dict]) -> list[tuple[str, list[str], list[list[str]]]]:
    """Per metric (and variant): (title, header, lines) with clusters as columns; split by
    task when the tasks have different clusters (personas and rating groups)."""
    out = []
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["metric"], row["variant"])].append(row)
    for (metric, variant), group in groups.items():
        title = metric + (f" ({variant})" if variant else "")
        by_task: dict[str, list[dict]] = defaultdict(list)
        for r in group:
            by_task[r["task"]].append(r)
        if len({frozenset(r["cluster"] for r in g) for g in by_task.values()}) > 1:
            out += [_pivot(f"{title}, {task}", g) for task, g in by_task.items()]
        else:
            out.append(_pivot(title, group))
    return out


def _pivot(title: str, group: list[dict]) -> tuple[str, list[str], list[list[str]]]:
    clusters = _cluster_order({r["cluster"] for r in group})
    lines: dict[tuple, dict] = {}
    for r in group:
        lines.setdefault((r["task"], r["model"], r["method"]), {})[r["cluster"]] = r
    body = []
    for (task, model, method), by_cluster in lines.items():
        texts = []
        for c in clusters:
            row = by_cluster.get(c)
            text = format_cell(interval_of(row)) if row else "-"
            if row and is_difference(method) and interval_of(row).overlaps_zero():
                mdd = "" if math.isnan(row["mdd"]) else f"; MDD {row['mdd']:.3f}"
                text += f" (0 in CI{mdd})"
            texts.append(text)
        body.append([task, model, method_label(method), *texts])
    return title, ["task", "model", "method", *clusters], body


def to_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    columns = list(COLUMNS[:3]) + (["variant"] if any(r["variant"] for r in rows) else [])
    columns += COLUMNS[3:]
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({**r, **{k: "" if math.isnan(r[k]) else r[k] for k in ("ci95", "mdd")}})
    return buffer.getvalue()


def to_markdown(rows: list[dict], caption: str) -> str:
    parts = [caption, ""]
    for title, header, body in pivots(rows):
        parts += [f"**{title}**", "", "| " + " | ".join(header) + " |",
                  "|" + "---|" * len(header)]  # fmt: skip
        parts += ["| " + " | ".join(line) + " |" for line in body]
        parts.append("")
    return "\n".join(parts)


def _tex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"),
                 ("#", r"\#"), ("±", r"$\pm$"), ("−", "$-$")):  # fmt: skip
        text = text.replace(a, b)
    return text


def to_latex(rows: list[dict], caption: str, label: str) -> str:
    parts = []
    for title, header, body in pivots(rows):
        parts += [r"\begin{table}[t]", r"\centering", r"\small",
                  r"\begin{tabular}{lll" + "r" * (len(header) - 3) + "}", r"\toprule",
                  " & ".join(map(_tex_escape, header)) + r" \\", r"\midrule"]  # fmt: skip
        parts += [" & ".join(map(_tex_escape, line)) + r" \\" for line in body]
        slug = re.sub("[^a-z0-9]+", "-", title.lower()).strip("-")
        parts += [r"\bottomrule", r"\end{tabular}",
                  rf"\caption{{{_tex_escape(caption)} Metric: {_tex_escape(title)}.}}",
                  rf"\label{{tab:{label}-{slug}}}", r"\end{table}", ""]  # fmt: skip
    return "\n".join(parts)


def write_tables(rows: list[dict], stem: str | Path, caption: str) -> None:
    """``stem``.csv, ``stem``.md and ``stem``.tex."""
    if not rows:
        raise PgrpoError(f"{stem}: no rows to write")
    label = Path(stem).name
    write_text(f"{stem}.csv", to_csv(rows))
    write_text(f"{stem}.md", to_markdown(rows, caption))
    write_text(f"{stem}.tex", to_latex(rows, caption, label))


def summary(rows: list[dict]) -> dict:
    """Overall means per model and method, for `dvc metrics diff`."""
    out: dict = {}
    for r in rows:
        if r["cluster"] in ("all", "worst", "gap"):
            key = r["metric"] + ("" if r["cluster"] == "all" else f"_{r['cluster']}")
            key += f"_{r['variant']}" if r["variant"] else ""
            out.setdefault(r["task"], {}).setdefault(r["model"], {}).setdefault(r["method"], {})[
                key
            ] = r["mean"]
    return out


def catalogue_parser(description: str, captions: dict | None) -> argparse.ArgumentParser:
    """The arguments every table and figure entry point takes: ``--name`` (one of
    ``captions``; None: checked by the caller) and ``--runs KEY=PATH ...``."""
    parser = argparse.ArgumentParser(description=description)
    choices = sorted(captions) if captions is not None else None
    parser.add_argument("--name", required=True, choices=choices)
    parser.add_argument("--runs", nargs="+", required=True, help="KEY=PATH (pgrpo.tables)")
    parser.add_argument(
        "--reference-method", default=REFERENCE,
        help="the method the difference rows subtract (train.reference_method)",
    )  # fmt: skip
    return parser
