"""The whole DAG at CI scale (.test/config.yaml): real data, tiny model, real MLflow store.

Runs `snakemake` once for the session in a temporary working directory, then checks what a
user gets: the three tasks' tables and figures, the adapters, the rating model (fitted on
the train split only), MLflow runs with every logged metric, and a second `snakemake` that
has nothing to do.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
METHODS = ("grpo", "pgrpo")
TASKS = ("movielens", "personas", "reviews")
STEP_METRICS = ("reward_mean", "loss", "kl", "clip_fraction", "zero_std_group_fraction")


def snakemake(workdir: Path, *args: str, env: dict) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
    cmd += ["--directory", str(workdir), "--configfile", str(REPO / ".test/config.yaml")]
    cmd += ["--cores", "2", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("pipeline")
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir}/mlflow.db"
    proc = snakemake(workdir, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    config = _yaml(workdir / ".test/outputs/effective_config.yaml")
    return {"dir": workdir, "env": env, "config": config}


def _yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def test_table_has_a_row_per_method_with_accuracies_per_cluster(run):
    table = run["dir"] / ".test/results/tables/movielens.csv"
    rows = list(csv.DictReader(table.open()))
    assert [r["method"] for r in rows] == ["Base model", "GRPO", "P-GRPO"]
    k = run["config"]["clustering"]["num_clusters"]
    for row in rows:
        clusters = [float(row[f"accuracy_cluster_{c}"]) for c in range(k)]
        assert all(0.0 <= a <= 1.0 for a in clusters)
        assert float(row["worst_cluster_accuracy"]) == pytest.approx(min(clusters))
        assert 0.0 <= float(row["test_accuracy"]) <= 1.0
        assert int(row["n_test"]) == run["config"]["evaluation"]["max_users"]
    for row in rows[1:]:
        assert 0.0 <= float(row["final_train_reward"]) <= 1.0
    markdown = (run["dir"] / ".test/results/tables/movielens.md").read_text()
    assert "| P-GRPO |" in markdown and "| GRPO |" in markdown


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_personas_table_has_the_reward_of_each_persona_and_the_clusters_ari(run):
    out = run["dir"] / ".test"
    rows = list(csv.DictReader((out / "results/tables/personas.csv").open()))
    assert [r["method"] for r in rows] == ["Base model", "GRPO", "P-GRPO"]
    tested = {e["persona"] for e in _jsonl(out / "resources/personas/test.jsonl")}
    clusters = json.loads((out / "outputs/personas/clusters/kmeans_k7.json").read_text())
    for row in rows:
        rewards = {c[len("reward_") :]: float(v) for c, v in row.items() if c.startswith("reward_")}
        assert set(rewards) <= tested and len(rewards) >= 3
        assert float(row["worst_group_reward"]) == pytest.approx(min(rewards.values()))
        assert rewards[row["worst_group"]] == pytest.approx(min(rewards.values()))
        assert float(row["cluster_ari"]) == pytest.approx(clusters["adjusted_rand_index"])
    assert -1.0 <= clusters["adjusted_rand_index"] <= 1.0 and clusters["num_clusters"] == 7


def test_reviews_table_has_the_reward_of_each_rating_and_the_rating_models_accuracy(run):
    out = run["dir"] / ".test"
    rows = list(csv.DictReader((out / "results/tables/reviews.csv").open()))
    rating = json.loads((out / "outputs/reviews/rating_model.json").read_text())
    for row in rows:
        columns = [c for c in row if c.startswith("reward_rating_")]
        assert columns == sorted(columns) and len(columns) >= 3
        assert float(row["rating_model_balanced_accuracy"]) == rating["balanced_accuracy"]
        assert float(row["rating_model_accuracy"]) == rating["accuracy"]
    assert rating["n_test"] == len(_jsonl(out / "resources/reviews/test.jsonl"))


def test_rating_model_was_fitted_on_train_reviews_only(run):
    import numpy as np

    out = run["dir"] / ".test"
    train = {str(r["review_id"]) for r in _jsonl(out / "resources/reviews/train.jsonl")}
    test = {str(r["review_id"]) for r in _jsonl(out / "resources/reviews/test.jsonl")}
    with np.load(out / "outputs/reviews/rating_model.npz", allow_pickle=False) as model:
        fitted = set(model["trained_on"].tolist())
    assert not fitted & test
    assert fitted <= train
    assert len(fitted) == min(len(train), run["config"]["reviews"]["rating_model_max_reviews"])


def test_reward_curve_figures_are_pngs(run):
    for task in TASKS:
        figure = run["dir"] / f".test/results/figures/{task}_reward_curves.png"
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert figure.stat().st_size > 10_000


def test_dvc_metrics_hold_each_tasks_headline_numbers(run):
    for task in TASKS:
        summary = json.loads((run["dir"] / f".test/results/metrics/{task}.json").read_text())
        assert set(summary[task]) == {"Base model", "GRPO", "P-GRPO"}
        key = "test_accuracy" if task == "movielens" else "test_reward"
        assert all(0.0 <= m[key] <= 1.0 for m in summary[task].values())


def test_simulation_table_and_figure(run):
    rows = list(csv.DictReader((run["dir"] / ".test/results/tables/simulation.csv").open()))
    assert len(rows) == 8 and {r["seeds"] for r in rows} == {"2"}  # .test/config.yaml
    figure = run["dir"] / ".test/results/figures/fig1_simulation.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("task", TASKS)
def test_each_method_saved_an_adapter_and_its_metrics(run, task):
    steps = run["config"]["train"]["steps"]
    for method in METHODS:
        out = run["dir"] / ".test/outputs" / task / method
        assert (out / "adapter/adapter_model.safetensors").stat().st_size > 0
        assert json.loads((out / "adapter/adapter_config.json").read_text())["r"] == 4
        lines = (out / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["step"] for line in lines] == list(range(steps))


def test_mlflow_has_every_step_metric_of_every_run(run):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=run["env"]["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name(run["config"]["mlflow"]["experiment"])
    runs = client.search_runs([experiment.experiment_id])
    found = sorted((r.data.tags["task"], r.data.tags["method"]) for r in runs)
    assert found == sorted((t, m) for t in TASKS for m in METHODS)
    steps = run["config"]["train"]["steps"]
    for r in runs:
        assert r.info.status == "FINISHED"
        assert r.data.params["train.steps"] == str(steps)
        assert r.info.run_name == f"{r.data.tags['task']}-{r.data.tags['method']}"
        for name in STEP_METRICS:
            history = client.get_metric_history(r.info.run_id, name)
            assert sorted(m.step for m in history) == list(range(steps)), name
        per_cluster = [m for m in r.data.metrics if m.startswith("reward_mean/cluster_")]
        assert per_cluster
        # MLflow holds what the run wrote to metrics.jsonl, step by step.
        local = run["dir"] / ".test/outputs" / r.data.tags["task"] / r.data.tags["method"]
        local = local / "metrics.jsonl"
        logged = [json.loads(line)["reward_mean"] for line in local.read_text().splitlines()]
        history = client.get_metric_history(r.info.run_id, "reward_mean")
        assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(logged)


def test_second_run_has_nothing_to_do(run):
    proc = snakemake(run["dir"], "--dry-run", env=run["env"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_judge_win_rates_cover_every_group_of_the_judged_tasks(run):
    out = run["dir"] / ".test"
    rows = list(csv.DictReader((out / "results/tables/judge_winrates.csv").open()))
    for task in ("personas", "reviews"):
        result = json.loads((out / f"outputs/{task}/judge_winrates.json").read_text())
        evaluation = json.loads((out / f"outputs/{task}/pgrpo/eval.json").read_text())
        assert set(result["per_group"]) == set(evaluation["per_group"])
        assert result["pairs"] == evaluation["n"]
        for cell in result["per_group"].values():
            assert cell["wins"] + cell["ties"] + cell["losses"] == cell["n"]
            assert cell["win_rate"] == pytest.approx((cell["wins"] + cell["ties"] / 2) / cell["n"])
        assert {r["group"] for r in rows if r["task"] == task} == set(result["per_group"])
    for suffix in ("png", "svg"):
        assert (out / f"results/figures/fig5_judge_winrates.{suffix}").stat().st_size > 5_000
