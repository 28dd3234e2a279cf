"""MLflow tracking: one run per training job, parameters, tags and per-step metrics.

The tracking URI is ``MLFLOW_TRACKING_URI`` when set, else a SQLite store ``mlflow.db`` in
the directory the pipeline runs in (the plain ``./mlruns`` file store is deprecated in
MLflow 3). Only the main process talks to MLflow.

Each training run is tagged with what identifies it (task, method, K, seed, git commit,
config hash, sha256 of its training data and clusters) and with ``pgrpo.run_dir``, its output
folder: the evaluation jobs find the run by that tag and log their metrics into it
(:func:`log_to_training_run`), so one MLflow run holds the training curves, the adapter, the
final per-cluster statistics and every evaluation of that adapter.

Several training jobs may start at once (``snakemake --cores N``): the first access to a new
SQLite store creates its schema and the experiment, which two processes must not do at the
same time (the second fails with "table already exists"). Run creation therefore holds an
exclusive lock on ``<store>.lock`` beside a SQLite store; metric writes that meet a busy
database are retried.

A SQLite store that exists but cannot be read (garbage, a damaged page, a folder) stops every
entry point that uses it with one line naming the file and how to start a fresh store
(:func:`check_store`, run before any work; :func:`store_errors` for damage met later).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import re
import shlex
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from pgrpo.io import PgrpoError

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
RUN_DIR_TAG = "pgrpo.run_dir"


# What SQLite says of a file it cannot use as a database (not of a busy one).
_DAMAGED = ("file is not a database", "database disk image is malformed",
            "unable to open database file")  # fmt: skip


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def sqlite_file(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` store (None for other stores)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    return Path(uri[len(prefix) :].split("?")[0])


def broken_store(path: Path, reason: str) -> PgrpoError:
    """The one-line error of an unreadable SQLite store, with how to start a fresh one."""
    move = f"mv {shlex.quote(str(path))} {shlex.quote(f'{path}.broken')}"
    return PgrpoError(
        f"{path}: not a readable MLflow store ({reason}); to start a fresh store and keep this "
        f"one, move it aside ({move}) or point MLFLOW_TRACKING_URI at another file "
        "(MLFLOW_TRACKING_URI=sqlite:///fresh.db)"
    )


def check_store(uri: str | None = None) -> None:
    """Stop with one line when the SQLite store ``uri`` (default :func:`tracking_uri`) exists
    but SQLite cannot read its schema; entry points call it before any work. A missing file
    is fine (MLflow creates it), and so is a store another process holds locked."""
    path = sqlite_file(uri or tracking_uri())
    if path is None or not os.path.lexists(path):
        return
    if path.is_dir():
        raise broken_store(path, "a folder, not a file")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        with contextlib.closing(db):
            db.execute("SELECT name FROM sqlite_master").fetchall()
    except sqlite3.Error as e:
        if "locked" not in str(e):
            raise broken_store(path, str(e)) from None


@contextlib.contextmanager
def store_errors(uri: str):
    """Damage SQLite meets inside the block (MLflow wraps it in SQLAlchemy's and its own
    exceptions) becomes :func:`broken_store`'s line; other errors pass unchanged."""
    try:
        yield
    except PgrpoError:
        raise
    except Exception as e:
        path = sqlite_file(uri)
        reason = next((d for d in _DAMAGED if d in str(e)), None)
        if path is None or reason is None or not os.path.lexists(path):
            raise
        raise broken_store(path, reason) from None


def _guarded(method):
    """``method`` run inside :func:`store_errors` of the current tracking store."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with store_errors(tracking_uri()):
            return method(*args, **kwargs)

    return wrapper


@contextlib.contextmanager
def store_lock(uri: str):
    """An exclusive inter-process lock beside a SQLite store (no-op for other stores)."""
    path = sqlite_file(uri)
    if path is None:
        yield
        return
    lock = Path(f"{path}.lock")
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


def run_dir_tag(path: str | Path) -> str:
    """The ``pgrpo.run_dir`` tag of a run folder: the path as the workflow names it."""
    return os.path.normpath(str(path))


def training_tags(args, run, config: dict, invocation_hash: str) -> dict:
    """The MLflow tags of a training run (``args``: pgrpo.train's arguments; ``run``: its
    accelerator, settings, trainer and data folder): what it trained, on which data and
    clusters, with which code and config, where it writes, and its SLURM job if any."""
    from pgrpo.io import sha256_of

    settings = run.settings
    tags = {
        "task": args.task, "method": args.method, "num_clusters": run.trainer.num_clusters,
        "partition": Path(args.clusters).stem,
        "seed": settings.seed, "group_size": settings.group_size,
        "git_commit": git_commit(), "config_hash": invocation_hash,
        "model": config["model"]["name"], "processes": run.accelerator.num_processes,
        "sharded": run.trainer.sharded,
        "data_sha256": sha256_of(run.data_dir / "train.jsonl"),
        "clusters_sha256": sha256_of(args.clusters), RUN_DIR_TAG: run_dir_tag(args.out),
    }  # fmt: skip
    if os.environ.get("SLURM_JOB_ID"):  # submitted through SLURM: which job trained it
        tags["slurm_job_id"] = os.environ["SLURM_JOB_ID"]
    return tags


def report_metrics(report: dict, prefix: str, skip: tuple[str, ...] = ()) -> dict[str, float]:
    """The numbers of an evaluation report as MLflow metrics named ``prefix/key[/sub...]``:
    numeric leaves of nested dicts (``per_cluster/0/reward``); lists, strings, booleans and
    the keys in ``skip`` are left out. Characters MLflow refuses in a name become ``_``."""
    out: dict[str, float] = {}

    def walk(name: str, node) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key not in skip:
                    walk(f"{name}/{key}", value)
        elif isinstance(node, int | float) and not isinstance(node, bool):
            out[re.sub(r"[^\w\-. /]", "_", name)] = float(node)

    walk(prefix, report)
    return out


@_guarded
def log_to_training_run(run_dir: str | Path, metrics: dict[str, float], experiment: str):
    """Log ``metrics`` into the finished training run whose ``pgrpo.run_dir`` is ``run_dir``
    (the latest, if it was trained more than once). Returns its run id, or None with a
    warning on stderr when the tracking store has no such run (for example a different
    ``MLFLOW_TRACKING_URI`` than at training time): the evaluation's own file stays the
    result either way."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    check_store()
    tag = run_dir_tag(run_dir)
    if "'" in tag:
        raise PgrpoError(f"{tag}: a run folder with a quote cannot be matched in MLflow")
    client = MlflowClient(tracking_uri())
    found = client.get_experiment_by_name(experiment)
    runs = []
    if found is not None:
        runs = client.search_runs(
            [found.experiment_id],
            filter_string=f"tags.`{RUN_DIR_TAG}` = '{tag}' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    if not runs:
        print(f"warning: no finished MLflow run of {tag} in {tracking_uri()}; "
              "evaluation metrics not logged to MLflow", file=sys.stderr)  # fmt: skip
        return None
    run_id = runs[0].info.run_id
    now = int(time.time() * 1000)
    batch = [Metric(key, value, now, 0) for key, value in sorted(metrics.items())]
    for start in range(0, len(batch), 500):  # MLflow takes at most 1000 metrics per batch
        chunk = batch[start : start + 500]
        _retry_busy(lambda chunk=chunk: client.log_batch(run_id, metrics=chunk))
    return run_id


def log_evaluation(config: dict, adapter, out, report: dict, kind: str, skip=()) -> None:
    """Join an evaluation of ``adapter`` (written to ``out``) to the adapter's training run:
    metrics ``kind/...``, or ``kind_<variant>/...`` for an evaluation in a sub-folder of the
    run (MovieLens ``c8/eval.json``). The base model (no adapter) has no training run."""
    if not adapter:
        return
    run_dir, folder = Path(adapter).parent, Path(out).parent
    prefix = kind if folder == run_dir else f"{kind}_{folder.name}"
    metrics = report_metrics(report, prefix, skip)
    log_to_training_run(run_dir, metrics, config["mlflow"]["experiment"])


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

    @_guarded
    def start(
        self, experiment: str, run_name: str, config: dict, tags: dict, resume_run_id=None
    ) -> None:
        """A new run, or ``resume_run_id`` continued (a checkpointed run; its params stay)."""
        if not self.enabled:
            return
        import mlflow

        uri = tracking_uri()
        check_store(uri)
        mlflow.set_tracking_uri(uri)
        params = {k: str(v)[:500] for k, v in _flatten("", config, {}).items()}
        tags = {k: str(v) for k, v in tags.items()}
        with store_lock(uri):
            mlflow.set_experiment(experiment)
            if resume_run_id and self._exists(resume_run_id):
                run = mlflow.start_run(run_id=resume_run_id)
                mlflow.set_tags(tags)
            else:
                stale = self._unfinished(tags.get(RUN_DIR_TAG))
                run = mlflow.start_run(run_name=run_name, tags=tags)
                mlflow.log_params(params)
                client = mlflow.MlflowClient()
                for old in stale:  # killed before its first checkpoint: superseded
                    client.set_tag(old, "pgrpo.superseded_by", run.info.run_id)
                    client.set_terminated(old, "KILLED")
            self.run_id = run.info.run_id

    @staticmethod
    def _unfinished(run_dir: str | None) -> list[str]:
        """Ids of the RUNNING runs of ``run_dir`` in the active experiment: runs of a killed
        process that a fresh start of the same job replaces."""
        import mlflow

        if not run_dir or "'" in run_dir:
            return []
        found = mlflow.search_runs(
            filter_string=f"tags.`{RUN_DIR_TAG}` = '{run_dir}' and attributes.status = 'RUNNING'",
            output_format="list",
        )
        return [run.info.run_id for run in found]

    @staticmethod
    def _exists(run_id: str) -> bool:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        try:
            MlflowClient().get_run(run_id)
        except MlflowException:
            return False
        return True

    @_guarded
    def last_logged_step(self, metric: str) -> int:
        """The last step of ``metric`` in this run (-1: none), so that a resumed run does
        not log again the steps its killed process logged after its checkpoint."""
        if not (self.enabled and self.run_id):
            return -1
        from mlflow.tracking import MlflowClient

        history = MlflowClient().get_metric_history(self.run_id, metric)
        return max((m.step for m in history), default=-1)

    @_guarded
    def log_metrics(self, metrics: dict, step: int) -> None:
        if self.enabled and self.run_id:
            import mlflow

            values = {k: float(v) for k, v in metrics.items()}
            _retry_busy(lambda: mlflow.log_metrics(values, step=step))

    def log_artifacts(self, folder: str | Path, artifact_path: str) -> None:
        """Every file under ``folder`` as artifacts under ``artifact_path``."""
        if self.enabled and self.run_id:
            import mlflow

            mlflow.log_artifacts(str(folder), artifact_path)

    def log_dict(self, data: dict, name: str) -> None:
        """``data`` as the JSON artifact ``name``."""
        if self.enabled and self.run_id:
            import mlflow

            mlflow.log_dict(data, name)

    @_guarded
    def end(self, status: str = "FINISHED") -> None:
        if self.enabled and self.run_id:
            import mlflow

            _retry_busy(lambda: mlflow.end_run(status=status))
