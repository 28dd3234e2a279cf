"""MLflow tracking: runs started at the same moment by several jobs on a fresh SQLite store
(what `snakemake --cores N` does) all succeed and all are recorded; an evaluation's numbers
join the training run of its folder."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sqlite3
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


# ------------------------------------------------------------------------- unreadable stores

GARBAGE = bytes(range(256)) * 16  # 4 KB that no SQLite header starts


def _broken(store, reason: str) -> str:
    return (
        f"{store}: not a readable MLflow store ({reason}); to start a fresh store and keep "
        f"this one, move it aside (mv {store} {store}.broken) or point MLFLOW_TRACKING_URI at "
        "another file (MLFLOW_TRACKING_URI=sqlite:///fresh.db)"
    )


def damaged(store) -> None:
    """A SQLite file whose schema spans pages, with every page after the first overwritten."""
    with contextlib.closing(sqlite3.connect(store)) as db:
        for i in range(60):
            db.execute(f"CREATE TABLE t{i} (id INTEGER PRIMARY KEY, name TEXT, value REAL)")
        db.commit()
    data = store.read_bytes()
    store.write_bytes(data[:4096] + GARBAGE * (len(data) // 4096 - 1))


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda store: store.write_bytes(GARBAGE), "file is not a database"),
        (lambda store: store.write_bytes(b"SQLite format 3\x00"), "file is not a database"),
        (damaged, "database disk image is malformed"),
        (lambda store: store.mkdir(), "a folder, not a file"),
    ],
    ids=["garbage", "truncated", "damaged", "folder"],
)
def test_an_unreadable_store_is_one_line_naming_it(tmp_path, monkeypatch, make, reason):
    from pgrpo.io import PgrpoError
    from pgrpo.tracking import Tracker, check_store, log_to_training_run

    store = tmp_path / "mlflow.db"
    make(store)
    before = store.is_file() and store.read_bytes()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    for use in (
        check_store,
        lambda: Tracker(enabled=True).start("e", "run", {}, {}),
        lambda: log_to_training_run(tmp_path / "run", {"eval/reward": 1.0}, "e"),
    ):
        with pytest.raises(PgrpoError) as info:
            use()
        assert str(info.value) == _broken(store, reason)
    assert (store.is_file() and store.read_bytes()) == before  # left as it was, to move aside


def test_a_new_empty_or_remote_store_passes_the_check(tmp_path):
    from pgrpo.tracking import check_store

    check_store(f"sqlite:///{tmp_path}/new.db")  # MLflow creates it
    assert not (tmp_path / "new.db").exists()
    (tmp_path / "empty.db").write_bytes(b"")  # SQLite's empty database
    check_store(f"sqlite:///{tmp_path}/empty.db")
    check_store("http://127.0.0.1:5000")  # not a file: MLflow's server reports its own errors


def test_damage_met_after_the_check_is_the_same_one_line(tmp_path):
    """The check reads the schema only; damage MLflow meets later (here a store replaced by
    garbage once checked) is the same line, and other errors pass unchanged."""
    from mlflow.tracking import MlflowClient

    from pgrpo.io import PgrpoError
    from pgrpo.tracking import store_errors

    store = tmp_path / "mlflow.db"
    uri = f"sqlite:///{store}"
    MlflowClient(uri).search_experiments()  # a healthy store
    store.write_bytes(GARBAGE)
    with pytest.raises(PgrpoError) as info, store_errors(uri):
        MlflowClient(uri).search_experiments()
    assert str(info.value) == _broken(store, "file is not a database")
    with pytest.raises(ValueError, match="not about the store"), store_errors(uri):
        raise ValueError("not about the store")
