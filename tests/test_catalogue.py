"""Tables over seeds: intervals against a direct computation, paired differences, the long
format, and refusal of missing or malformed runs."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from entrypoints import one_error_line, run_entry

from pgrpo.evaluate import reward_report
from pgrpo.io import PgrpoError
from pgrpo.stats import mean_ci95, paired_difference
from pgrpo.tables import cells, parse_runs, summary, to_csv, write_tables


def test_interval_is_the_student_t_interval_computed_by_hand():
    values = [0.21, 0.25, 0.18, 0.30]
    mean = sum(values) / 4
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 3)
    t = 3.182446305284263  # t(0.975, 3 degrees of freedom), from a t table
    interval = mean_ci95(values)
    assert interval.mean == pytest.approx(mean)
    assert interval.ci95 == pytest.approx(t * sd / 2)  # sqrt(4) = 2
    assert interval.n == 4
    two = mean_ci95([1.0, 2.0])  # t(0.975, 1) = 12.706
    assert two.ci95 == pytest.approx(12.706204736 * math.sqrt(0.5) / math.sqrt(2))
    one = mean_ci95([0.4])
    assert one.mean == 0.4 and math.isnan(one.ci95) and one.overlaps_zero()
    with pytest.raises(PgrpoError, match="NaN"):
        mean_ci95([0.1, float("nan")])


def test_paired_difference_pairs_by_seed_and_refuses_unpaired_seeds():
    first, second = {0: 0.5, 1: 0.7, 2: 0.6}, {0: 0.4, 1: 0.5, 2: 0.55}
    diff = paired_difference(first, second)
    direct = mean_ci95([0.1, 0.2, 0.05])
    assert (diff.mean, diff.ci95) == pytest.approx((direct.mean, direct.ci95))
    assert diff.overlaps_zero()  # +0.10, +0.20, +0.05: half-width 0.19 > mean 0.117
    with pytest.raises(PgrpoError, match=r"seeds \[2\] are missing"):
        paired_difference(first, {0: 0.4, 1: 0.5})


def _evaluation(per_cluster: dict[str, float], usable: float = 1.0) -> dict:
    return {"task": "movielens", "reward": float(np.mean(list(per_cluster.values()))),
            "usable_rate": usable, "n": 10, "num_candidates": [4],
            "per_cluster": {c: {"reward": r, "n": 5} for c, r in per_cluster.items()}}  # fmt: skip


def _runs(tmp_path, accuracies: dict[str, list[dict[str, float]]]) -> list[str]:
    """Eval files of every method and seed; base with one (seedless) evaluation."""
    args = []
    for method, seeds in accuracies.items():
        for seed, per_cluster in enumerate(seeds):
            path = tmp_path / f"{method}{seed}" / "eval.json"
            path.parent.mkdir(exist_ok=True)
            path.write_text(json.dumps(_evaluation(per_cluster)))
            key = "-" if method == "base" else str(seed)
            args.append(f"m/movielens/{method}/{key}={path}")
    return args


SEEDS = {
    "base": [{"0": 0.2, "1": 0.1}],
    "grpo": [{"0": 0.3, "1": 0.1}, {"0": 0.4, "1": 0.2}, {"0": 0.35, "1": 0.0}],
    "pgrpo": [{"0": 0.4, "1": 0.3}, {"0": 0.5, "1": 0.25}, {"0": 0.45, "1": 0.2}],
}


def test_cells_match_a_direct_computation_per_cluster_and_method(tmp_path):
    rows = cells(parse_runs(_runs(tmp_path, SEEDS)))
    cell = {(r["method"], r["cluster"], r["metric"]): r for r in rows}
    for method in ("grpo", "pgrpo"):
        for cluster in ("0", "1"):
            direct = mean_ci95([s[cluster] for s in SEEDS[method]])
            row = cell[(method, cluster, "accuracy")]
            assert (row["mean"], row["ci95"], row["n_seeds"]) == pytest.approx(
                (direct.mean, direct.ci95, 3)
            )
        worst = mean_ci95([min(s.values()) for s in SEEDS[method]])
        assert cell[(method, "worst", "accuracy")]["mean"] == pytest.approx(worst.mean)
        assert cell[(method, "worst", "accuracy")]["ci95"] == pytest.approx(worst.ci95)
    base = cell[("base", "all", "accuracy")]
    assert base["n_seeds"] == 1 and math.isnan(base["ci95"]) and base["mean"] == pytest.approx(0.15)
    diff = cell[("pgrpo-grpo", "1", "accuracy")]
    pairs = zip(SEEDS["pgrpo"], SEEDS["grpo"], strict=True)
    direct = mean_ci95([p["1"] - g["1"] for p, g in pairs])
    assert (diff["mean"], diff["ci95"]) == pytest.approx((direct.mean, direct.ci95))
    assert ("pgrpo-grpo", "0", "accuracy") in cell and ("base-grpo", "0", "accuracy") not in cell


def test_written_tables_are_long_format_and_flag_intervals_containing_zero(tmp_path):
    rows = cells(parse_runs(_runs(tmp_path, SEEDS)))
    stem = tmp_path / "out" / "table1_movielens"
    write_tables(rows, stem, "Caption.")
    with open(f"{stem}.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["task", "model", "method", "cluster", "metric", "mean", "ci95",
                              "n_seeds", "mdd"]  # fmt: skip
    base = [r for r in table if r["method"] == "base"]
    assert base and all(r["ci95"] == "" and r["n_seeds"] == "1" for r in base)
    markdown = open(f"{stem}.md").read()
    difference = [line for line in markdown.splitlines() if "P-GRPO − GRPO" in line]
    accuracy, parse_rate = difference  # one row per metric
    cells_ = accuracy.split(" | ")  # task, model, method, all, 0, 1, worst
    assert cells_[4] == "0.100 ± 0.000"  # +0.10 on every seed: no overlap, no flag
    # +0.20, +0.05, +0.20: sd 0.0866 over 3 seeds, MDD 3.264 * 0.0866 (pwr.t.test's d at n=3)
    assert cells_[5] == "0.150 ± 0.215 (0 in CI; MDD 0.283)"
    assert parse_rate.endswith("| 0.000 ± 0.000 (0 in CI; MDD 0.000) |")
    mdd = [r["mdd"] for r in table if r["method"] == "pgrpo-grpo" and r["cluster"] == "1"]
    assert mdd and float(mdd[0]) == pytest.approx(3.2642 * 0.0866, rel=1e-3)
    assert all(r["mdd"] == "" for r in table if r["method"] != "pgrpo-grpo")
    tex = open(f"{stem}.tex").read()
    assert r"\begin{tabular}" in tex and r"$\pm$" in tex and "P-GRPO $-$ GRPO" in tex
    assert summary(rows)["movielens"]["m"]["pgrpo"]["accuracy"] == pytest.approx(0.35)


def test_a_table_refuses_a_missing_run_file_and_writes_nothing(tmp_path):
    args = _runs(tmp_path, SEEDS) + [f"m/movielens/grpo/3={tmp_path / 'gone/eval.json'}"]
    out = tmp_path / "results" / "table1_movielens"
    done = run_entry("pgrpo.catalogue", "--name", "table1_movielens", "--runs", *args,
                     "--out", str(out))  # fmt: skip
    assert "eval.json: no such file (run m/movielens/grpo/3)" in one_error_line(done)
    assert not out.parent.exists()


def test_malformed_run_keys_and_duplicate_seeds_are_refused(tmp_path):
    with pytest.raises(PgrpoError, match="expected MODEL/TASK/METHOD/SEED"):
        parse_runs([f"m/movielens/grpo={tmp_path}"])
    args = _runs(tmp_path, SEEDS)
    with pytest.raises(PgrpoError, match="given twice"):
        cells(parse_runs(args + [args[1]]))


def test_csv_omits_the_variant_column_unless_a_run_has_one(tmp_path):
    rows = cells(parse_runs(_runs(tmp_path, SEEDS)))
    assert "variant" not in to_csv(rows).splitlines()[0]
    path = tmp_path / "eval_c8.json"
    path.write_text(json.dumps(_evaluation({"0": 0.1})))
    rows = cells(parse_runs([f"m/movielens/base/-/c8={path}"]))
    assert to_csv(rows).splitlines()[0].split(",")[3] == "variant"


def test_reward_report_per_cluster_and_per_true_group():
    report = reward_report(
        rewards=[1.0, 0.0, 0.5, 0.5, 0.2, 0.4],
        usable=[True, True, True, False, True, True],
        clusters=[0, 0, 1, 1, 2, 2],
        num_clusters=4,
        groups=["a", "b", "a", "b", "a", "c"],
    )
    assert report["reward"] == pytest.approx(2.6 / 6)
    assert report["usable_rate"] == pytest.approx(5 / 6)
    assert report["per_cluster"]["2"] == {"reward": pytest.approx(0.3), "n": 2}
    assert report["worst_cluster_reward"] == pytest.approx(0.3)
    assert report["clusters_without_test_users"] == ["3"]
    assert report["per_group"]["a"] == {"reward": pytest.approx(1.7 / 3), "n": 3}
    assert (report["worst_group"], report["worst_group_reward"]) == ("b", 0.25)
    assert "per_group" not in reward_report([1.0], [True], [0], 1)


def test_tasks_with_different_groups_get_one_pivot_each(tmp_path):
    args = []
    for task, groups in (("personas", ["jazz", "rock"]), ("reviews", ["rating 1"])):
        path = tmp_path / task / "judge_winrates.json"
        path.parent.mkdir()
        path.write_text(json.dumps({"per_group": {g: {"win_rate": 0.5} for g in groups}}))
        args.append(f"m/{task}/pgrpo/0={path}")
    stem = tmp_path / "fig5"
    write_tables(cells(parse_runs(args)), stem, "Caption.")
    markdown = open(f"{stem}.md").read()
    assert "**win_rate, personas**" in markdown and "**win_rate, reviews**" in markdown
    assert "| task | model | method | jazz | rock |" in markdown
    assert r"\label{tab:fig5-win-rate-reviews}" in open(f"{stem}.tex").read()
