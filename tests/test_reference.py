"""Tests for pgrpo.reference: the published headline numbers and the comparison with them."""

from __future__ import annotations

import json
import math

import pytest
from entrypoints import one_error_line, run_entry

from pgrpo.reference import compare, compare_cell, headline_cells
from pgrpo.tables import cells, parse_runs, write_tables


def _table(tmp_path, name: str, accuracies: dict[str, list[float]]) -> str:
    """A table1-like catalogue table: per method, one eval.json per seed."""
    runs = []
    for method, values in accuracies.items():
        for seed, value in enumerate(values):
            report = {"task": "movielens", "reward": value, "usable_rate": 1.0, "n": 10,
                      "num_candidates": [4],
                      "per_cluster": {"0": {"reward": value, "n": 5},
                                      "1": {"reward": value / 2, "n": 5}}}  # fmt: skip
            path = tmp_path / name / method / str(seed) / "eval.json"
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps(report))
            runs.append(f"m/movielens/{method}/{seed if method != 'base' else '-'}={path}")
    stem = tmp_path / name / "table1_movielens"
    write_tables(cells(parse_runs(runs)), stem, "Caption.")
    return f"{stem}.csv"


PUBLISHED = {"base": [0.25], "grpo": [0.30, 0.34, 0.32], "pgrpo": [0.33, 0.35, 0.37]}


def test_headline_cells_are_the_all_and_worst_rows(tmp_path):
    got = headline_cells([_table(tmp_path, "a", PUBLISHED)])
    assert got["table1_movielens/movielens/m/grpo//all/accuracy"]["mean"] == pytest.approx(0.32)
    assert got["table1_movielens/movielens/m/base//all/accuracy"]["ci95"] is None
    assert "table1_movielens/movielens/m/grpo//worst/accuracy" in got
    assert not [k for k in got if "/0/" in k or "/1/" in k]  # per-cluster cells are not headline


def test_a_rerun_with_the_same_numbers_is_consistent_and_a_shifted_one_is_not(tmp_path):
    reference = {"commit": "abc", "cells": headline_cells([_table(tmp_path, "a", PUBLISHED)])}
    same = compare(reference, [_table(tmp_path, "b", PUBLISHED)])
    assert same["compared"] == same["consistent"] == same["inside"] == len(reference["cells"])
    shifted = {**PUBLISHED, "grpo": [0.40, 0.44, 0.42], "base": [0.26]}
    moved = compare(reference, [_table(tmp_path, "c", shifted)])
    grpo = moved["cells"]["table1_movielens/movielens/m/grpo//all/accuracy"]
    assert grpo["difference"] == pytest.approx(0.10) and not grpo["consistent"]
    assert not moved["cells"]["table1_movielens/movielens/m/base//all/accuracy"]["inside"]
    assert moved["cells"]["table1_movielens/movielens/m/pgrpo//all/accuracy"]["consistent"]


def test_the_welch_interval_uses_both_runs_seeds_and_spread():
    # Published 0.30 +- 0.10 and new +- 0.10, 3 seeds each: se = 0.10 / t(2) per run, the
    # difference's half-width t(4) * sqrt(2) * 0.10 / t(2) = 0.091 (Welch, df 4), narrower than
    # either interval: pooling 6 seeds buys degrees of freedom.
    from scipy import stats

    half = stats.t.ppf(0.975, 4) * math.sqrt(2) * 0.10 / stats.t.ppf(0.975, 2)
    published = {"mean": 0.30, "ci95": 0.10, "n_seeds": 3}
    near, edge, far = (
        compare_cell(published, {"mean": m, "ci95": 0.10, "n_seeds": 3})
        for m in (0.38, 0.395, 0.46)
    )
    assert near["difference_ci95"] == pytest.approx(half)
    assert (near["inside"], near["consistent"]) == (True, True)
    assert (edge["inside"], edge["consistent"]) == (True, False)
    assert (far["inside"], far["consistent"]) == (False, False)
    # A cell without interval (the base model) against a run with one: only its noise counts.
    base = compare_cell({"mean": 0.25, "ci95": None, "n_seeds": 1},
                        {"mean": 0.30, "ci95": 0.10, "n_seeds": 3})  # fmt: skip
    assert base["difference_ci95"] == pytest.approx(0.10) and base["consistent"]


def test_the_cli_publishes_compares_and_names_a_bad_table(tmp_path):
    table = _table(tmp_path, "a", PUBLISHED)
    ref = tmp_path / "reference.json"
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"git": {"commit": "c0ffee"}}))
    done = run_entry("pgrpo.reference", "publish", "--tables", table, "--manifest",
                     str(manifest), "--out", str(ref))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(ref.read_text())["commit"] == "c0ffee"
    fewer = _table(tmp_path, "b", {"grpo": PUBLISHED["grpo"], "pgrpo": PUBLISHED["pgrpo"]})
    done = run_entry("pgrpo.reference", "compare", "--reference", str(ref), "--tables", fewer,
                     "--out", str(tmp_path / "cmp"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "cmp.json").read_text())
    assert result["missing"] == ["table1_movielens/movielens/m/base//all/accuracy",
                                 "table1_movielens/movielens/m/base//all/parse_rate",
                                 "table1_movielens/movielens/m/base//worst/accuracy"]  # fmt: skip
    assert "of commit c0ffee" not in done.stdout and "headline numbers" in done.stdout
    assert (tmp_path / "cmp.md").read_text().startswith("Comparison with the published run")
    bad = tmp_path / "bad.csv"
    bad.write_text("task,model,method,cluster,metric,mean,ci95,n_seeds\nt,m,g,all,acc,x,,1\n")
    done = run_entry("pgrpo.reference", "compare", "--reference", str(ref), "--tables",
                     str(bad), "--out", str(tmp_path / "cmp2"))  # fmt: skip
    assert f"{bad}:2: not a catalogue row" in one_error_line(done)
    assert not (tmp_path / "cmp2.json").exists()
    nothing = run_entry("pgrpo.reference", "compare", "--tables", fewer,
                        "--out", str(tmp_path / "cmp3"))  # fmt: skip
    assert nothing.returncode == 0, nothing.stderr
    assert json.loads((tmp_path / "cmp3.json").read_text())["compared"] == 0
    assert (tmp_path / "cmp3.md").read_text().startswith("No published reference")
    gone = run_entry("pgrpo.reference", "compare", "--reference", str(tmp_path / "no.json"),
                     "--tables", fewer, "--out", str(tmp_path / "cmp4"))  # fmt: skip
    assert "no.json: file not found" in one_error_line(gone)


def test_power_lists_the_mdd_and_seeds_of_every_published_difference(tmp_path):
    from pgrpo.reference import power_table

    reference = {"cells": {
        "t/movielens/m/pgrpo-grpo//all/accuracy": {"mean": -0.008, "ci95": 0.051, "n_seeds": 3},
        "t/movielens/m/grpo//all/accuracy": {"mean": 0.3, "ci95": 0.1, "n_seeds": 3},
        "t/movielens/m/pgrpo-grpo//worst/accuracy": {"mean": 0.1, "ci95": None, "n_seeds": 1},
    }}  # fmt: skip
    (row,) = power_table(reference, 0.03)
    # t = 0.008 / (0.051 / t(2)) = 0.675, two-sided p = 0.569 (df 2);
    # sd = 0.051 * sqrt(3) / t(2) = 0.0205; MDD = 3.2642 sd (pwr.t.test, n = 3); the half-width
    # t(n) sd / sqrt(n) falls under 0.03 at n = 5 (0.0255), not at 4 (0.0327).
    assert row["mdd"] == pytest.approx(3.2642 * 0.051 * math.sqrt(3) / 4.3027, rel=1e-3)
    assert row["seeds_for_half_width"] == 5
    assert row["spread"] == pytest.approx(0.051 * math.sqrt(3) / 4.3027, rel=1e-3)
    ref = tmp_path / "r.json"
    ref.write_text(json.dumps(reference))
    done = run_entry("pgrpo.reference", "power", "--reference", str(ref), "--out",
                     str(tmp_path / "p.md"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "| -0.008 ± 0.051 | 3 | 0.569 | 0.021 | 0.067 | 5 |" in (tmp_path / "p.md").read_text()
