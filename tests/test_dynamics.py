"""Tests for pgrpo.dynamics: figure 6, the share of all-equal groups and the per-cluster
advantage, from the training runs' metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
from entrypoints import one_error_line, run_entry

from pgrpo.dynamics import training_values


def _metrics(path, shares, advantages=None):
    rows = []
    for step, share in enumerate(shares):
        row = {"step": step, "reward_mean": 0.3, "zero_std_group_fraction": share}
        for cluster, values in (advantages or {}).items():
            if values[step] is not None:  # a cluster absent from a step's batch logs nothing
                row[f"advantage_mean/cluster_{cluster}"] = values[step]
        rows.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_training_values_average_over_the_steps_a_cluster_appeared_in(tmp_path):
    path = _metrics(tmp_path / "m.jsonl", [0.0, 0.5, 0.25], {0: [0.2, None, 0.4], 1: [-1, -1, 0]})
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    values = {(m, c): v for m, c, v in training_values(rows)}
    assert values == pytest.approx({("all_equal_share", "all"): 0.25,
                                    ("advantage_mean", "0"): 0.3,
                                    ("advantage_mean", "1"): -2 / 3})  # fmt: skip
    assert training_values([{"reward_mean": 0.1}]) == []  # metrics from before these were logged


def test_fig6_cli_draws_both_tasks_and_tabulates_the_paired_difference(tmp_path):
    args = []
    for task in ("movielens", "personas"):
        for method, share in (("grpo", 0.3), ("pgrpo", 0.35)):
            for seed in range(3):
                shares = np.full(12, share + seed / 100)
                adv = {0: [0.0] * 12, 1: [0.0] * 12} if method == "grpo" else {
                    0: [0.1 + seed / 10] * 12, 1: [-0.2] * 12}  # fmt: skip
                path = _metrics(tmp_path / task / method / str(seed) / "metrics.jsonl", shares, adv)
                args.append(f"m/{task}/{method}/{seed}={path}")
    out = tmp_path / "results"
    done = run_entry("pgrpo.figures", "--name", "fig6_training_dynamics", "--runs", *args,
                     "--figure", str(out / "fig6"), "--table", str(out / "t"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (out / "fig6.png").stat().st_size > 10_000 and (out / "fig6.svg").exists()
    table = (out / "t.csv").read_text().splitlines()
    diff = [r for r in table if r.startswith("movielens,m,pgrpo-grpo,all,all_equal_share,")]
    assert diff and float(diff[0].split(",")[5]) == pytest.approx(0.05)
    adv = [r for r in table if r.startswith("personas,m,pgrpo,0,advantage_mean,")]
    assert adv and float(adv[0].split(",")[5]) == pytest.approx(0.2)


def test_fig6_refuses_metrics_without_the_share(tmp_path):
    old = tmp_path / "old" / "metrics.jsonl"
    old.parent.mkdir()
    old.write_text(json.dumps({"reward_mean": 0.2}) + "\n")
    done = run_entry("pgrpo.figures", "--name", "fig6_training_dynamics", "--runs",
                     f"m/movielens/grpo/0={old}", "--figure", str(tmp_path / "f"),
                     "--table", str(tmp_path / "t"))  # fmt: skip
    assert "no zero_std_group_fraction per step" in one_error_line(done)
    assert not list(tmp_path.glob("f.*"))


def _choice_eval(path, accuracy):
    cell = {"all": accuracy, "per_cluster": {"0": accuracy}, "worst_cluster": accuracy}
    report = {"task": "movielens", "reward": accuracy, "usable_rate": 1.0, "n": 8,
              "num_candidates": [4],
              "per_cluster": {"0": {"reward": accuracy, "n": 8}},
              "choices": {"letter_accuracy": cell, "correct_probability": cell,
                          "letter_mass": cell}}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report))
    return path


def test_fig7_draws_the_paired_difference_against_the_group_size(tmp_path):
    args = []
    for g, gain in ((4, 0.04), (16, 0.0)):
        for method in ("grpo", "pgrpo"):
            for seed in range(3):
                folder = tmp_path / f"g{g}" / method / str(seed)
                accuracy = 0.3 + seed / 50 + (gain if method == "pgrpo" else 0.0)
                share = 0.32 if g == 4 else 0.01
                key = f"m/movielens/{method}/{seed}/g{g}"
                evaluation = _choice_eval(folder / "eval.json", accuracy)
                args += [
                    f"{key}={evaluation}",
                    f"{key}={_metrics(folder / 'metrics.jsonl', [share] * 5)}",
                ]
    out = tmp_path / "results"
    done = run_entry("pgrpo.figures", "--name", "fig7_group_size", "--runs", *args,
                     "--figure", str(out / "fig7"), "--table", str(out / "t"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (out / "fig7.png").stat().st_size > 10_000
    table = (out / "t.csv").read_text().splitlines()
    for g, gain in ((4, 0.04), (16, 0.0)):
        (row,) = [
            r for r in table if r.startswith(f"movielens,m,pgrpo-grpo,g{g},all,letter_accuracy,")
        ]
        assert float(row.split(",")[6]) == pytest.approx(gain, abs=1e-12)
    one = [a for a in args if "/g16=" in a]
    done = run_entry("pgrpo.figures", "--name", "fig7_group_size", "--runs", *one,
                     "--figure", str(out / "one"), "--table", str(out / "one"))  # fmt: skip
    assert "2 or more group sizes" in one_error_line(done)


def test_fig2_draws_the_validation_curves_the_runs_logged(tmp_path):
    from pgrpo.dynamics import validation_curves
    from pgrpo.tables import parse_runs

    args = []
    for method in ("grpo", "pgrpo"):
        for seed in range(2):
            path = _metrics(tmp_path / method / str(seed) / "metrics.jsonl", [0.1] * 4)
            rows = [json.loads(line) for line in path.read_text().splitlines()]
            rows[0].update({"val0/letter_accuracy": 0.25, "val0/num_options": 4})
            rows[1].update({"val/letter_accuracy": 0.3 + seed / 10, "val/updates": 2})
            rows[3].update({"val/letter_accuracy": 0.4, "val/updates": 4})
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
            args.append(f"m/movielens/{method}/{seed}={path}")
    updates, values, options = validation_curves(parse_runs(args))["m"]["pgrpo"]
    assert updates.tolist() == [0, 2, 4] and options == 4
    assert values.ravel().tolist() == pytest.approx([0.25, 0.3, 0.4, 0.25, 0.4, 0.4])
    out = tmp_path / "results"
    done = run_entry("pgrpo.figures", "--name", "fig2_reward_curves", "--runs", *args,
                     "--figure", str(out / "fig2"), "--table", str(out / "t"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (out / "fig2.png").stat().st_size > 10_000
    rows[3]["val/updates"] = 5  # a seed scored at other updates
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = run_entry("pgrpo.figures", "--name", "fig2_reward_curves", "--runs", *args,
                     "--figure", str(out / "bad"), "--table", str(out / "bad"))  # fmt: skip
    assert "pgrpo: seeds scored at different updates" in one_error_line(done)
