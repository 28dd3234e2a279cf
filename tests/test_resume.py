"""A training run killed at a random step (SIGKILL), or stopped the way SLURM preempts a job
(SIGTERM), and then started again resumes from its last checkpoint and ends exactly where an
uninterrupted run ends: adapter, metrics and MLflow run (CPU, the `.test` model and data)."""

from __future__ import annotations

import copy
import json
import random
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

    def run(self, config: Path, out: Path) -> subprocess.CompletedProcess:
        cmd = train_command(self.pipeline, config, out)
        done = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=900)
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
