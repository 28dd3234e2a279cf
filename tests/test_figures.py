"""Figures 2-5 from run files: drawn from complete data, refused (with nothing written) from
missing or inconsistent data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from entrypoints import one_error_line, run_entry

from pgrpo.figures import fig3, fig4, reward_curves
from pgrpo.io import PgrpoError
from pgrpo.plotting import band, trailing_mean
from pgrpo.stats import mean_ci95
from pgrpo.tables import cells, parse_runs


def _write(path, obj) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in obj))
    else:
        path.write_text(json.dumps(obj))
    return str(path)


def _eval(accuracy: float) -> dict:
    return {"task": "movielens", "reward": accuracy, "usable_rate": 1.0, "n": 4,
            "num_candidates": [4],
            "per_cluster": {"0": {"reward": accuracy, "n": 4}},
            "choices": _choices(accuracy)}  # fmt: skip


def _choices(accuracy: float) -> dict:
    cell = lambda v: {"all": v, "per_cluster": {"0": v}, "worst_cluster": v}  # noqa: E731
    return {"letter_accuracy": cell(accuracy), "correct_probability": cell(accuracy * 0.9),
            "letter_mass": cell(0.5)}  # fmt: skip


def _candidate_runs(tmp_path, sizes=(4, 8), skip=None) -> list[str]:
    args = []
    for method in ("grpo", "pgrpo"):
        for seed in (0, 1):
            for n in sizes:
                if (method, n) == skip:
                    continue
                path = _write(
                    tmp_path / f"{method}{seed}c{n}" / "eval.json", _eval(1 / n + seed / 10)
                )
                args.append(f"m/movielens/{method}/{seed}/c{n}={path}")
    for n in sizes:
        reference = {"heuristics": {"popularity": _choices(0.5 - n / 100)}}
        path = _write(tmp_path / f"heuristics_c{n}.json", reference)
        args.append(f"m/movielens/heuristics/-/c{n}={path}")
    return args


def test_fig3_refuses_a_method_missing_a_candidate_size(tmp_path):
    rows = cells(parse_runs(_candidate_runs(tmp_path, skip=("pgrpo", 8))))
    with pytest.raises(PgrpoError, match="pgrpo has no letter accuracy for c8"):
        fig3(rows, tmp_path / "fig3")
    assert not list(tmp_path.glob("fig3.*"))


def test_the_cli_writes_png_svg_and_the_numbers(tmp_path):
    out = tmp_path / "results"
    done = run_entry("pgrpo.figures", "--name", "fig3_accuracy_vs_candidates", "--runs",
                     *_candidate_runs(tmp_path), "--figure", str(out / "fig3"),
                     "--table", str(out / "fig3_table"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (out / "fig3.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "fig3.svg").read_text().lstrip().startswith("<?xml")
    table = (out / "fig3_table.csv").read_text().splitlines()
    pgrpo_c8 = [line for line in table if line.startswith("movielens,m,pgrpo,c8,all,accuracy")]
    expected = mean_ci95([1 / 8, 1 / 8 + 0.1])
    assert pgrpo_c8 and float(pgrpo_c8[0].split(",")[6]) == pytest.approx(expected.mean)
    # The reference rows: one method per heuristic, its pick's accuracy under both names.
    for metric in ("accuracy", "letter_accuracy"):
        (row,) = [
            line for line in table if line.startswith(f"movielens,m,popularity,c8,all,{metric},")
        ]
        assert float(row.split(",")[6]) == pytest.approx(0.42)


def test_a_figure_from_a_missing_run_file_is_an_error_and_writes_nothing(tmp_path):
    args = _candidate_runs(tmp_path) + [f"m/movielens/grpo/2/c8={tmp_path / 'nope' / 'eval.json'}"]
    out = tmp_path / "results"
    done = run_entry("pgrpo.figures", "--name", "fig3_accuracy_vs_candidates", "--runs", *args,
                     "--figure", str(out / "fig3"), "--table", str(out / "t"))  # fmt: skip
    assert "nope/eval.json: no such file" in one_error_line(done)
    assert not out.exists()


def test_fig4_needs_the_random_partition_and_several_cluster_counts(tmp_path):
    args = []
    for part in ("kmeans_k1", "kmeans_k4"):
        for seed in (0, 1):
            path = _write(tmp_path / f"{part}{seed}" / "eval.json", _eval(0.3 + seed / 10))
            args.append(f"m/movielens/pgrpo/{seed}/{part}={path}")
    with pytest.raises(PgrpoError, match="no P-GRPO run with random clusters"):
        fig4(cells(parse_runs(args)), tmp_path / "fig4")
    with pytest.raises(PgrpoError, match="at least two K-Means cluster counts"):
        fig4(cells(parse_runs(args[:2])), tmp_path / "fig4")
    assert not list(tmp_path.glob("fig4.*"))


def test_reward_curves_average_seeds_and_refuse_unequal_lengths(tmp_path):
    rewards = {0: [0.0, 0.2, 0.4], 1: [0.2, 0.2, 0.6]}
    args = []
    for seed, values in rewards.items():
        rows = [{"step": i, "reward_mean": v} for i, v in enumerate(values)]
        path = _write(tmp_path / f"s{seed}" / "metrics.jsonl", rows)
        args.append(f"m/movielens/pgrpo/{seed}={path}")
    curves = reward_curves(parse_runs(args))["m"]["pgrpo"]
    mean, half = band(curves)
    direct = [
        mean_ci95([trailing_mean(np.array(v))[i] for v in rewards.values()]) for i in range(3)
    ]
    assert mean == pytest.approx([d.mean for d in direct])
    assert half == pytest.approx([d.ci95 for d in direct])
    short = _write(tmp_path / "s2" / "metrics.jsonl", [{"step": 0, "reward_mean": 0.1}])
    with pytest.raises(PgrpoError, match="different numbers of steps"):
        reward_curves(parse_runs(args + [f"m/movielens/pgrpo/2={short}"]))


@pytest.mark.slow
def test_the_curves_file_dvc_plots_holds_each_methods_mean_and_interval(tmp_path):
    rewards = {("grpo", 0): [0.0, 0.2, 0.4], ("grpo", 1): [0.2, 0.2, 0.6],
               ("pgrpo", 0): [0.1, 0.3, 0.5], ("pgrpo", 1): [0.3, 0.5, 0.5]}  # fmt: skip
    args = []
    for (method, seed), values in rewards.items():
        rows = [{"step": i, "reward_mean": v} for i, v in enumerate(values)]
        path = _write(tmp_path / method / f"s{seed}" / "metrics.jsonl", rows)
        args.append(f"m/movielens/{method}/{seed}={path}")
    out = tmp_path / "curves.csv"
    done = run_entry("pgrpo.figures", "--name", "fig2_reward_curves", "--runs", *args,
                     "--curves", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == "step,grpo,pgrpo,grpo_ci95,pgrpo_ci95" and len(lines) == 4
    for step, line in enumerate(lines[1:]):
        values = [float(v) for v in line.split(",")]
        assert values[0] == step
        for i, method in enumerate(("grpo", "pgrpo")):
            seeds = [trailing_mean(np.array(rewards[(method, s)]))[step] for s in (0, 1)]
            direct = mean_ci95(seeds)
            assert values[1 + i] == pytest.approx(direct.mean, abs=1e-6)
            assert values[3 + i] == pytest.approx(direct.ci95, abs=1e-6)
    bad = run_entry("pgrpo.figures", "--name", "fig3_accuracy_vs_candidates", "--runs",
                    *args, "--curves", str(tmp_path / "other.csv"))  # fmt: skip
    assert "only fig2_reward_curves has curves" in one_error_line(bad)
    assert not (tmp_path / "other.csv").exists()


def test_a_method_has_one_colour_in_every_panel():
    """Colours follow the method, not its position among a panel's methods: GDPO has no
    per-cluster advantage, and figure 6's bars then drew GRPO in GDPO's colour of the
    curves above them."""
    from pgrpo.methods import BUILTIN
    from pgrpo.plotting import method_color, plot_bands, pyplot

    colours = [method_color(m) for m in BUILTIN]
    assert len(set(colours)) == len(colours)
    assert method_color("pgrpo-grpo") == method_color("pgrpo")  # a difference: its method's
    assert method_color("my_method") not in colours
    # The same colour in every process (a figure redrawn later): not Python's salted hash().
    script = "from pgrpo.plotting import method_color; print(method_color('my_method'))"
    for salt in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": salt}
        other = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                               env=env, check=True, timeout=120,
                               cwd=Path(__file__).resolve().parents[1]).stdout.strip()  # fmt: skip
        assert other == method_color("my_method")
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2)
    curves = np.ones((2, 5))
    plot_bands(a, {"gdpo": curves, "grpo": curves, "pgrpo": curves})
    plot_bands(b, {"grpo": curves, "pgrpo": curves})
    drawn = [{line.get_label().split(" (")[0]: line.get_color() for line in ax.get_lines()}
             for ax in (a, b)]  # fmt: skip
    plt.close(fig)
    assert drawn[0]["GRPO"] == drawn[1]["GRPO"] == method_color("grpo")
    assert drawn[0]["P-GRPO"] == drawn[1]["P-GRPO"] != drawn[0]["GDPO"]
