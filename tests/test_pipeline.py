"""The whole DAG at CI scale (.test/config.yaml): real data, tiny model, real MLflow store.

Runs `snakemake` once for the session in a temporary working directory, then checks what a
user gets: the table, the figure, the adapters, MLflow runs with every logged metric, and a
second `snakemake` that has nothing to do.
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
        assert int(row["n_test_users"]) == run["config"]["evaluation"]["max_users"]
    for row in rows[1:]:
        assert 0.0 <= float(row["final_train_reward"]) <= 1.0
    markdown = (run["dir"] / ".test/results/tables/movielens.md").read_text()
    assert "| P-GRPO |" in markdown and "| GRPO |" in markdown


def test_reward_curve_figure_is_a_png(run):
    figure = run["dir"] / ".test/results/figures/movielens_reward_curves.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert figure.stat().st_size > 10_000


def test_simulation_table_and_figure(run):
    rows = list(csv.DictReader((run["dir"] / ".test/results/tables/simulation.csv").open()))
    assert len(rows) == 8 and {r["seeds"] for r in rows} == {"2"}  # .test/config.yaml
    figure = run["dir"] / ".test/results/figures/fig1_simulation.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_each_method_saved_an_adapter_and_its_metrics(run):
    steps = run["config"]["train"]["steps"]
    for method in METHODS:
        out = run["dir"] / ".test/outputs/movielens" / method
        assert (out / "adapter/adapter_model.safetensors").stat().st_size > 0
        assert json.loads((out / "adapter/adapter_config.json").read_text())["r"] == 4
        lines = (out / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["step"] for line in lines] == list(range(steps))


def test_mlflow_has_every_step_metric_of_both_runs(run):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=run["env"]["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name(run["config"]["mlflow"]["experiment"])
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["method"] for r in runs) == sorted(METHODS)
    steps = run["config"]["train"]["steps"]
    for r in runs:
        assert r.info.status == "FINISHED"
        assert r.data.params["train.steps"] == str(steps)
        assert r.data.tags["task"] == "movielens"
        for name in STEP_METRICS:
            history = client.get_metric_history(r.info.run_id, name)
            assert sorted(m.step for m in history) == list(range(steps)), name
        per_cluster = [m for m in r.data.metrics if m.startswith("reward_mean/cluster_")]
        assert per_cluster
        # MLflow holds what the run wrote to metrics.jsonl, step by step.
        local = run["dir"] / ".test/outputs/movielens" / r.data.tags["method"] / "metrics.jsonl"
        logged = [json.loads(line)["reward_mean"] for line in local.read_text().splitlines()]
        history = client.get_metric_history(r.info.run_id, "reward_mean")
        assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(logged)


def test_second_run_has_nothing_to_do(run):
    proc = snakemake(run["dir"], "--dry-run", env=run["env"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Nothing to be done" in proc.stdout + proc.stderr
