"""MLflow tracking: one run per training job, parameters, tags and per-step metrics.

The tracking URI is ``MLFLOW_TRACKING_URI`` when set, else a SQLite store ``mlflow.db`` in
the directory the pipeline runs in (the plain ``./mlruns`` file store is deprecated in
MLflow 3). Only the main process talks to MLflow.

Several training jobs may start at once (``snakemake --cores N``): the first access to a new
SQLite store creates its schema and the experiment, which two processes must not do at the
same time (the second fails with "table already exists"). Run creation therefore holds an
exclusive lock on ``<store>.lock`` beside a SQLite store; metric writes that meet a busy
database are retried.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import time
from pathlib import Path

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


@contextlib.contextmanager
def store_lock(uri: str):
    """An exclusive inter-process lock beside a SQLite store (no-op for other stores)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        yield
        return
    lock = Path(uri[len(prefix) :] + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _retry_busy(call, attempts: int = 5, wait: float = 0.5):
    """``call()``, retried while the SQLite database is locked by another writer."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as e:  # mlflow wraps sqlalchemy's OperationalError
            if "locked" not in str(e) or attempt == attempts - 1:
                raise
            time.sleep(wait * (attempt + 1))


def git_commit() -> str:
    """The project's git commit, or 'unknown' outside a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _flatten(prefix: str, node, out: dict) -> dict:
    if isinstance(node, dict):
        for key, value in node.items():
            _flatten(f"{prefix}.{key}" if prefix else key, value, out)
    else:
        out[prefix] = node
    return out


class Tracker:
    """An MLflow run, or a no-op on processes other than the main one."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.run_id: str | None = None

    def start(self, experiment: str, run_name: str, config: dict, tags: dict) -> None:
        if not self.enabled:
            return
        import mlflow

        uri = tracking_uri()
        mlflow.set_tracking_uri(uri)
        params = {k: str(v)[:500] for k, v in _flatten("", config, {}).items()}
        with store_lock(uri):
            mlflow.set_experiment(experiment)
            tags = {k: str(v) for k, v in tags.items()}
            run = mlflow.start_run(run_name=run_name, tags=tags)
            self.run_id = run.info.run_id
            mlflow.log_params(params)

    def log_metrics(self, metrics: dict, step: int) -> None:
        if self.enabled and self.run_id:
            import mlflow

            values = {k: float(v) for k, v in metrics.items()}
            _retry_busy(lambda: mlflow.log_metrics(values, step=step))

    def end(self, status: str = "FINISHED") -> None:
        if self.enabled and self.run_id:
            import mlflow

            _retry_busy(lambda: mlflow.end_run(status=status))
