"""A training run killed at a random step (SIGKILL), or stopped the way SLURM preempts a job
(SIGTERM), and then started again resumes from its last checkpoint and ends exactly where an
uninterrupted run ends: adapter, metrics and MLflow run (CPU, the `.test` model and data).

A save that was interrupted is never resumed from, and a save that runs out of room (a small
tmpfs, a file size limit) stops training with one line naming the file, leaves nothing
half-written and keeps the previous checkpoint."""

from __future__ import annotations

import copy
import json
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from pgrpo.checkpoint import FOLDER, latest

pytestmark = pytest.mark.slow

STEPS = 20


def train_command(pipeline: dict, config: Path, out: Path) -> list[str]:
    d, paths = pipeline["dir"], pipeline["config"]["paths"]
    resources, outputs = d / paths["resources"], d / paths["outputs"]
    return [
        sys.executable, "-m", "pgrpo.train", "--config", str(config), "--task", "movielens",
        "--method", "pgrpo", "--model", str(resources / "models/tiny"),
        "--data", str(resources / "movielens"),
        "--clusters", str(outputs / "movielens/clusters/kmeans_k3.json"),
        "--seed", "0", "--no-progress", "--out", str(out),
    ]  # fmt: skip


class Runs:
    """Training runs of the `.test` inputs with their own configs and MLflow store."""

    def __init__(self, pipeline: dict, root: Path):
        self.pipeline, self.root = pipeline, root
        self.env = dict(pipeline["env"], MLFLOW_TRACKING_URI=f"sqlite:///{root}/mlflow.db")

    def config(self, name: str, **train) -> Path:
        config = copy.deepcopy(self.pipeline["config"])
        config["train"].update(steps=STEPS, **train)
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def attempt(self, config: Path, out: Path, env=None, **popen) -> subprocess.CompletedProcess:
        """Run training to its end, whatever its exit code (``env``: variables set besides)."""
        cmd, env = train_command(self.pipeline, config, out), {**self.env, **(env or {})}
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, **popen)

    def run(self, config: Path, out: Path) -> subprocess.CompletedProcess:
        done = self.attempt(config, out)
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    def interrupt(self, config: Path, out: Path, sig: int, after_step: int):
        """Start a run and send it ``sig`` once it has checkpointed step ``after_step`` or a
        later one; (exit code, stderr)."""
        log = out.parent / f"{out.name}.stderr"
        with open(log, "w") as err:
            proc = subprocess.Popen(
                train_command(self.pipeline, config, out), env=self.env,
                stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip
            deadline = time.monotonic() + 900
            while proc.poll() is None and time.monotonic() < deadline:
                folder = latest(out)
                if folder is not None and int(folder.name.split("-")[1]) >= after_step:
                    proc.send_signal(sig)
                    break
                time.sleep(0.01)
            code = proc.wait(timeout=900)
        return code, log.read_text()

    def mlflow_run(self, out: Path):
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=self.env["MLFLOW_TRACKING_URI"])
        runs = client.search_runs(
            [client.get_experiment_by_name(self.pipeline["config"]["mlflow"]["experiment"])
             .experiment_id],
            filter_string=f"tags.`pgrpo.run_dir` = '{out.resolve()}'",
        )  # fmt: skip
        assert len(runs) == 1, [r.info.run_id for r in runs]
        return client, runs[0]


def metrics(out: Path) -> list[dict]:
    """metrics.jsonl without the timings (which differ from run to run)."""
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if not k.startswith("time/")} for row in rows]


@pytest.fixture(scope="module")
def runs(pipeline, tmp_path_factory):
    runs = Runs(pipeline, tmp_path_factory.mktemp("resume"))
    runs.whole = runs.root / "whole"
    runs.run(runs.config("whole"), runs.whole)
    return runs


def assert_same_as_uninterrupted(runs: Runs, out: Path) -> None:
    assert metrics(out) == metrics(runs.whole)
    ours, theirs = (load_file(o / "adapter/adapter_model.safetensors") for o in (out, runs.whole))
    assert ours.keys() == theirs.keys()
    for name, tensor in theirs.items():
        assert torch.equal(ours[name], tensor), name
    assert not (out / FOLDER).exists()  # removed once the outputs are written
    client, run = runs.mlflow_run(out)
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "reward_mean")
    assert sorted(m.step for m in history) == list(range(STEPS))  # each step logged once
    by_step = {m.step: m.value for m in history}
    assert [by_step[s] for s in range(STEPS)] == [m["reward_mean"] for m in metrics(runs.whole)]


def test_sigkill_at_a_random_step_then_rerun_ends_bit_for_bit(runs):
    step = random.randint(1, STEPS // 2)
    print(f"killing after the checkpoint of step {step}")
    out = runs.root / "killed"
    config = runs.config("killed", checkpoint_every=1)
    code, _ = runs.interrupt(config, out, signal.SIGKILL, step)
    assert code == -signal.SIGKILL, "the run ended before it was killed"
    # Nothing that looks finished: no adapter, no metrics; a checkpoint to resume from.
    assert not (out / "adapter").exists() and not (out / "metrics.jsonl").exists()
    killed_at = int(latest(out).name.split("-")[1])
    assert step <= killed_at < STEPS
    client, run = runs.mlflow_run(out)
    assert run.info.status == "RUNNING"  # a SIGKILLed process cannot end its run

    done = runs.run(config, out)
    assert f"resuming from {out / FOLDER}/step-{killed_at:06d}" in done.stdout
    assert_same_as_uninterrupted(runs, out)
    assert runs.mlflow_run(out)[1].info.run_id == run.info.run_id  # the same MLflow run


def test_sigterm_checkpoints_the_current_step_and_exits_143(runs):
    out = runs.root / "preempted"
    config = runs.config("preempted", checkpoint_every=4)
    code, stderr = runs.interrupt(config, out, signal.SIGTERM, 4)
    assert code == 128 + signal.SIGTERM, stderr[-2000:]
    saved = int(stderr.split("checkpoint of step ")[1].split()[0])
    assert latest(out).name == f"step-{saved:06d}" and 4 < saved < STEPS
    assert runs.mlflow_run(out)[1].info.status == "KILLED"
    assert not (out / "adapter").exists() and not (out / "metrics.jsonl").exists()

    done = runs.run(config, out)
    assert f"step {saved} of {STEPS}" in done.stdout
    assert_same_as_uninterrupted(runs, out)


def test_a_checkpoint_of_other_settings_is_not_resumed(runs):
    out = runs.root / "changed"
    code, _ = runs.interrupt(runs.config("before", checkpoint_every=1), out, signal.SIGKILL, 2)
    assert code == -signal.SIGKILL and latest(out) is not None
    changed = runs.config("after", checkpoint_every=1, learning_rate=1e-3)
    done = runs.run(changed, out)
    assert "checkpoint of a different run (settings changed); starting from step 0" in (done.stderr)
    assert "resuming from" not in done.stdout
    assert len(metrics(out)) == STEPS


def test_an_incomplete_checkpoint_is_reported_removed_and_never_resumed(runs):
    out = runs.root / "incomplete"
    config = runs.config("incomplete", checkpoint_every=1)
    code, _ = runs.interrupt(config, out, signal.SIGKILL, 2)
    assert code == -signal.SIGKILL and latest(out) is not None
    complete = latest(out)
    step = int(complete.name.split("-")[1])
    # What a save killed mid-way leaves: its temporary folder, or (older versions) a step-*
    # folder without state.pt; both newer than the complete checkpoint.
    leftovers = {out / FOLDER / f".step-{step + 1:06d}.tmp": "an unfinished save",
                 out / FOLDER / f"step-{step + 2:06d}": "no state.pt"}  # fmt: skip
    for folder in leftovers:
        folder.mkdir(exist_ok=True)
        shutil.copy(complete / "rng-rank0.pt", folder)

    done = runs.run(config, out)
    assert f"resuming from {complete} (step {step} of {STEPS})" in done.stdout
    for folder, lacking in leftovers.items():
        warning = f"{folder}: incomplete checkpoint ({lacking}), ignored and removed"
        assert done.stderr.count(warning) == 1, done.stderr[-3000:]
    assert_same_as_uninterrupted(runs, out)


def assert_write_failed(done: subprocess.CompletedProcess, message: str) -> None:
    """Training stopped with exit code 2 and ``error: <message>``, its one error line and the
    last line of stderr (no traceback)."""
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.splitlines()
    assert [line for line in lines if line.startswith("error: ")] == [f"error: {message}"], (
        done.stderr[-3000:]
    )
    assert lines[-1] == f"error: {message}" and "Traceback" not in done.stderr


def assert_nothing_half_written(out: Path) -> None:
    """No output, no temporary file or folder, and only complete checkpoint folders."""
    assert not (out / "adapter").exists() and not (out / "metrics.jsonl").exists()
    assert not list(out.glob(".*")) and not list(out.glob(f"{FOLDER}/.*"))
    assert all((folder / "state.pt").is_file() for folder in out.glob(f"{FOLDER}/step-*"))


@pytest.fixture
def small_disk(tmp_path):
    """An 80 KB tmpfs: room for one checkpoint of the tiny model (a 14 KB rng-rank0.pt and a
    33 KB state.pt, in 4 KB pages), not for a second beside it. Skipped where mounting is not
    permitted."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=80k", "tmpfs", str(disk)]
    try:
        done = subprocess.run(mount, capture_output=True, text=True, timeout=60)
    except OSError as e:
        pytest.skip(f"cannot mount a tmpfs: {e}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip() or done.returncode}")
    yield disk
    subprocess.run(["umount", str(disk)], timeout=60)


def test_a_full_disk_while_checkpointing_keeps_the_last_checkpoint(runs, small_disk):
    out = small_disk
    config = runs.config("full-disk", checkpoint_every=1)
    done = runs.attempt(config, out)
    written = out / FOLDER / ".step-000002.tmp/state.pt"
    full = "could not write the checkpoint (No space left on device)"
    assert_write_failed(done, f"{written}: {full}")
    assert_nothing_half_written(out)
    assert [p.name for p in (out / FOLDER).iterdir()] == ["step-000001"]  # the previous one

    subprocess.run(["mount", "-o", "remount,size=16m", str(out)], check=True, timeout=60)
    done = runs.run(config, out)  # with room again: resumes from the surviving checkpoint
    assert f"resuming from {out / FOLDER}/step-000001 (step 1 of {STEPS})" in done.stdout
    assert_same_as_uninterrupted(runs, out)


def file_size_limit(limit: int):
    """A ``preexec_fn``: files of the process may grow to ``limit`` bytes; a write beyond
    fails with EFBIG ("File too large"), for any user (SIGXFSZ ignored, as Python does)."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    return apply


@pytest.mark.parametrize(
    ("every", "limit", "written", "what"),
    [
        # rng-rank0.pt (14 KB) fits, state.pt (33 KB) does not.
        (1, 24_000, f"{FOLDER}/.step-000001.tmp/state.pt", " the checkpoint"),
        # No checkpoint; the adapter's README.md (5 KB) fits, adapter_model.safetensors (8 KB,
        # written by safetensors' Rust code) does not.
        (0, 6_000, "adapter", ""),
    ],
    ids=["checkpoint", "adapter"],
)  # fmt: skip
def test_a_file_size_limit_stops_training_with_one_line_naming_the_file(
    runs, tmp_path, every, limit, written, what
):
    out = tmp_path / "out"
    config = runs.config(f"limit-{every}", checkpoint_every=every)
    # MLflow in memory: its SQLite file would outgrow the limit first.
    memory = {"MLFLOW_TRACKING_URI": "sqlite:///:memory:"}
    done = runs.attempt(config, out, memory, cwd=tmp_path, preexec_fn=file_size_limit(limit))
    assert_write_failed(done, f"{out / written}: could not write{what} (File too large)")
    assert_nothing_half_written(out)
