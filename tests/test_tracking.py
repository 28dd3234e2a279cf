"""MLflow tracking: runs started at the same moment by several jobs on a fresh SQLite store
(what `snakemake --cores N` does) all succeed and all are recorded; an evaluation's numbers
join the training run of its folder."""

from __future__ import annotations

import multiprocessing
import os
import time

import pytest


def _start_run(uri: str, name: str, barrier) -> None:
    os.environ["MLFLOW_TRACKING_URI"] = uri
    from pgrpo.tracking import Tracker

    tracker = Tracker(enabled=True)
    barrier.wait()  # every process creates its run at the same moment
    tracker.start("concurrent", name, {"train": {"steps": 2}}, {"task": "t", "method": name})
    for step in range(2):
        tracker.log_metrics({"reward_mean": 0.5 + step}, step)
    tracker.end()


@pytest.mark.slow
def test_concurrent_runs_on_a_fresh_sqlite_store(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    names = [f"job{i}" for i in range(4)]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(names))
    processes = [context.Process(target=_start_run, args=(uri, n, barrier)) for n in names]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=300)
    assert [p.exitcode for p in processes] == [0] * len(names)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("concurrent")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == names
    assert all(r.info.status == "FINISHED" for r in runs)
    assert all(len(client.get_metric_history(r.info.run_id, "reward_mean")) == 2 for r in runs)


def _trained(uri: str, run_dir: str, monkeypatch) -> str:
    """A finished training run of ``run_dir`` in the store ``uri``; its id."""
    from pgrpo.tracking import RUN_DIR_TAG, Tracker, run_dir_tag

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    tracker = Tracker(enabled=True)
    tracker.start("joined", "train", {"seed": 0}, {RUN_DIR_TAG: run_dir_tag(run_dir)})
    tracker.end()
    return tracker.run_id


def test_an_evaluation_joins_the_latest_finished_run_of_its_folder(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from pgrpo.tracking import log_evaluation

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    folder = "outputs/m/movielens/kmeans_k4/seed0/pgrpo"
    _trained(uri, folder, monkeypatch)
    time.sleep(0.01)  # distinct start times (milliseconds)
    latest = _trained(uri, folder + "/", monkeypatch)  # the same folder, trained again
    other = _trained(uri, "outputs/m/movielens/kmeans_k4/seed0/grpo", monkeypatch)
    report = {
        "reward": 0.25,
        "n": 8,
        "task": "movielens",
        "answers": [1, 2],
        "ok": True,
        "per_cluster": {"0": {"reward": 0.5, "n": 4}},
        "per_group": {"hip+hop": 0.1},
    }
    config = {"mlflow": {"experiment": "joined"}}
    log_evaluation(config, f"{folder}/adapter", f"{folder}/eval.json", report, "eval")
    log_evaluation(config, f"{folder}/adapter", f"{folder}/c8/eval.json", {"reward": 0.1}, "eval")
    client = MlflowClient(tracking_uri=uri)
    metrics = client.get_run(latest).data.metrics
    assert metrics == {"eval/reward": 0.25, "eval/n": 8.0, "eval/per_cluster/0/reward": 0.5,
                       "eval/per_cluster/0/n": 4.0, "eval/per_group/hip_hop": 0.1,
                       "eval_c8/reward": 0.1}  # fmt: skip
    assert client.get_run(other).data.metrics == {}


def test_an_evaluation_without_its_training_run_warns_and_logs_nothing(tmp_path, capsys,
                                                                       monkeypatch):  # fmt: skip
    from pgrpo.tracking import log_to_training_run

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    _trained(uri, "outputs/a", monkeypatch)
    assert log_to_training_run("outputs/b", {"eval/reward": 1.0}, "joined") is None
    assert log_to_training_run("outputs/a", {"eval/reward": 1.0}, "missing") is None
    assert capsys.readouterr().err.count("no finished MLflow run of outputs/b") == 1
