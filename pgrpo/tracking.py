"""MLflow tracking: one run per training job, parameters, tags and per-step metrics.

The tracking URI is ``MLFLOW_TRACKING_URI`` when set, else a SQLite store ``mlflow.db`` in
the directory the pipeline runs in (the plain ``./mlruns`` file store is deprecated in
MLflow 3). Only the main process talks to MLflow.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


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

        mlflow.set_tracking_uri(tracking_uri())
        mlflow.set_experiment(experiment)
        run = mlflow.start_run(run_name=run_name, tags={k: str(v) for k, v in tags.items()})
        self.run_id = run.info.run_id
        params = {k: str(v)[:500] for k, v in _flatten("", config, {}).items()}
        mlflow.log_params(params)

    def log_metrics(self, metrics: dict, step: int) -> None:
        if self.enabled and self.run_id:
            import mlflow

            mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def end(self, status: str = "FINISHED") -> None:
        if self.enabled and self.run_id:
            import mlflow

            mlflow.end_run(status=status)
