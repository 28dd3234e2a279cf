"""Tests for pgrpo.summary: one line per method of a published task table, and one-line
errors for what is not one."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from entrypoints import one_error_line, run_entry

REPO = Path(__file__).resolve().parents[1]
REVIEWS = REPO / "results/baselines/tables/table3_reviews.csv"


def published(method: str, cluster: str, metric: str = "reward") -> dict:
    with REVIEWS.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if (row["method"], row["cluster"], row["metric"]) == (method, cluster, metric):
                return row
    raise AssertionError(f"no {method} {cluster} {metric} in {REVIEWS}")


def test_each_method_is_one_line_with_its_differences_against_grpo():
    done = run_entry("pgrpo.summary", str(REVIEWS))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[2].startswith("| method | all | worst group | best − worst gap | all − GRPO |")
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines[4:] if line.startswith("| ")}
    names = list(rows)
    assert names[:3] == ["Base model", "GRPO", "P-GRPO"] and len(names) == 8
    assert "MaxMin GRPO" in names and "GDPO" in names
    cells = [c.strip() for c in rows["MaxMin GRPO"].strip("| ").split(" | ")]
    for column, cluster in zip((1, 2, 3), ("all", "worst", "gap"), strict=True):
        row = published("maxmin_grpo", cluster)
        assert cells[column] == f"{float(row['mean']):.3f} ± {float(row['ci95']):.3f}"
    worst = published("maxmin_grpo-grpo", "worst")
    assert abs(float(worst["mean"])) > float(worst["ci95"])  # excludes 0: in bold
    assert cells[5] == f"**{float(worst['mean']):+.3f} ± {float(worst['ci95']):.3f}**"
    gap = published("pgrpo-grpo", "gap")
    assert abs(float(gap["mean"])) < float(gap["ci95"])  # holds 0: with its MDD
    p_cells = [c.strip() for c in rows["P-GRPO"].strip("| ").split(" | ")]
    assert p_cells[6] == (
        f"{float(gap['mean']):+.3f} ± {float(gap['ci95']):.3f} ({float(gap['mdd']):.3f})"
    )
    base = [c.strip() for c in rows["Base model"].strip("| ").split(" | ")]
    assert base[1] == f"{float(published('base', 'all')['mean']):.3f}"
    assert rows["Base model"].endswith(" |  |  |  |")  # no seeds: no paired differences
    with REVIEWS.open(newline="", encoding="utf-8") as f:
        diffs = [r for r in csv.DictReader(f)
                 if "-" in r["method"] and r["metric"] == "reward" and r["ci95"]]  # fmt: skip
    excluding = sum(abs(float(r["mean"])) > float(r["ci95"]) for r in diffs)
    assert f"{excluding} of {len(diffs)} difference cells of reward exclude 0" in done.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [(["--metric", "rewrad"], "no metric 'rewrad' (it has "),
     (["--reference", "ppo"], "no method 'ppo' among base, ")],
)  # fmt: skip
def test_a_metric_or_method_the_table_lacks_is_named(args, words):
    message = one_error_line(run_entry("pgrpo.summary", str(REVIEWS), *args))
    assert message.startswith(f"error: {REVIEWS}: {words}"), message


def test_a_file_that_is_not_a_table_is_named(tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    message = one_error_line(run_entry("pgrpo.summary", str(other)))
    assert message.startswith(f"error: {other}: not a pgrpo table CSV (no column ci95,"), message
    missing = tmp_path / "missing.csv"
    message = one_error_line(run_entry("pgrpo.summary", str(missing)))
    assert message.startswith(f"error: {missing}: cannot read the table"), message
