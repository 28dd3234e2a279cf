"""MLflow tracking: runs started at the same moment by several jobs on a fresh SQLite store
(what `snakemake --cores N` does) all succeed and all are recorded."""

from __future__ import annotations

import multiprocessing
import os


def _start_run(uri: str, name: str, barrier) -> None:
    os.environ["MLFLOW_TRACKING_URI"] = uri
    from pgrpo.tracking import Tracker

    tracker = Tracker(enabled=True)
    barrier.wait()  # every process creates its run at the same moment
    tracker.start("concurrent", name, {"train": {"steps": 2}}, {"task": "t", "method": name})
    for step in range(2):
        tracker.log_metrics({"reward_mean": 0.5 + step}, step)
    tracker.end()


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
