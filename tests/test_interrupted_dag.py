"""The `.test` MovieLens DAG with three seeds at once (``--cores 2``: two jobs at a time, all
writing to one MLflow store), killed with SIGKILL (Snakemake and every job) while a training
runs, then run again.

* Atomic outputs: the killed jobs left no output; every file there is complete.
* Nothing redone: the second invocation plans exactly the jobs the first did not finish, and
  the interrupted training resumes from its checkpoint.
* Under load: every file of the finished run belongs to exactly one job (output, log or
  benchmark), and MLflow holds one finished run per training job.
"""

from __future__ import annotations

import collections
import csv
import io
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from pipeline_run import TEST_CONFIG, environment, snakemake, snakemake_command
from safetensors import safe_open

pytestmark = pytest.mark.slow

TARGET = ".test/results/tables/table1_movielens.csv"
# Three seeds, longer trainings checkpointed every step (a config file: --config would
# pass the nested numbers as strings).
OVERRIDES = "seeds: 3\ntrain: {steps: 12, checkpoint_every: 1}\n"
# Written by the Snakefile's onstart, not by a job: the config snapshot and the start stamp.
WORKFLOW_FILES = re.compile(r"\.test/outputs/(configs/[0-9a-f]{16}\.yaml|run_started\.json)")


def config(workdir: Path) -> list[str]:
    return ["--configfile", str(TEST_CONFIG), str(workdir / "overrides.yaml")]


def job_stats(log: str) -> dict[str, int]:
    """The first "Job stats" table of a Snakemake log: rule -> jobs."""
    table = log.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.M)
    return {rule: int(n) for rule, n in rows if rule != "total"}


def finished(log: str) -> collections.Counter:
    return collections.Counter(re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", log))


def trainings(workdir: Path) -> list[Path]:
    return sorted((workdir / ".test/outputs/tiny/movielens").glob("*/seed*/*/"))


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """Run until two trainings finished and a third checkpointed, then SIGKILL them all."""
    workdir = tmp_path_factory.mktemp("interrupted")
    env = environment(workdir)
    (workdir / "overrides.yaml").write_text(OVERRIDES)
    log = workdir / "killed.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            snakemake_command(workdir, TARGET, *config(workdir)), env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline, victim = time.monotonic() + 1800, None
        while proc.poll() is None and time.monotonic() < deadline:
            runs = trainings(workdir)
            done = [r for r in runs if (r / "metrics.jsonl").exists()]
            running = [r for r in runs if list(r.glob("checkpoints/step-*/state.pt"))]
            running = [r for r in running if not (r / "metrics.jsonl").exists()]
            if len(done) >= 2 and running:
                os.killpg(proc.pid, signal.SIGKILL)
                victim = running[0]
                break
            time.sleep(0.02)
        proc.wait(timeout=60)
    assert victim is not None, "the DAG ended before a training could be killed"
    time.sleep(1)  # let the kernel reap the jobs
    return {"dir": workdir, "env": env, "log": log.read_text(), "victim": victim}


@pytest.fixture(scope="module")
def resumed(interrupted):
    d, env = interrupted["dir"], interrupted["env"]
    # A SIGKILLed Snakemake leaves its lock: the user's first step, as Snakemake says.
    assert snakemake(d, TARGET, *config(d), "--unlock", env=env).returncode == 0
    planned = snakemake(d, TARGET, *config(d), "--dry-run", env=env)
    assert planned.returncode == 0, planned.stderr[-3000:]
    done = snakemake(d, TARGET, *config(d), env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = snakemake(d, TARGET, *config(d), "--detailed-summary", env=env)
    assert summary.returncode == 0, summary.stderr[-3000:]
    return {**interrupted, "planned": planned.stdout, "summary": summary.stdout}


def test_killed_jobs_left_no_output_and_every_file_is_complete(interrupted):
    victim = interrupted["victim"]
    assert not (victim / "adapter").exists() and not (victim / "metrics.jsonl").exists()
    for path in (interrupted["dir"] / ".test").rglob("*"):
        if path.name.startswith("."):
            continue  # an unfinished writer's hidden temporary
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".jsonl":
            [json.loads(line) for line in path.read_text().splitlines()]
        elif path.suffix == ".npz":
            dict(np.load(path))
        elif path.suffix == ".safetensors":
            with safe_open(path, "pt") as f:
                [f.get_tensor(k) for k in f.keys()]


def test_rerun_plans_exactly_the_unfinished_jobs(resumed):
    first = job_stats(resumed["log"])
    assert first["train"] == 6  # 3 seeds x (grpo, pgrpo)
    left = {r: n - finished(resumed["log"])[r] for r, n in first.items()}
    assert job_stats(resumed["planned"]) == {r: n for r, n in left.items() if n}
    assert 0 < left["train"] <= 4


def test_the_killed_training_resumed_from_its_checkpoint(resumed):
    victim = resumed["victim"]
    seed, method = victim.parent.name, victim.name
    log = next((resumed["dir"] / ".test/outputs/logs/train").rglob(f"*_{seed}_{method}.log"))
    assert re.search(r"resuming from .*step-\d{6} \(step \d+ of 12\)", log.read_text())
    assert len((victim / "metrics.jsonl").read_text().splitlines()) == 12
    assert not (victim / "checkpoints").exists()


def test_every_file_belongs_to_exactly_one_job(resumed):
    rows = list(csv.DictReader(io.StringIO(resumed["summary"]), delimiter="\t"))
    assert rows and all(row["status"] == "ok" for row in rows)
    owner: dict[str, set] = collections.defaultdict(set)
    for row in rows:
        job = (row["rule"], row["log-file(s)"])  # a job's log is its own
        logs = [f for f in row["log-file(s)"].split(",") if f and f != "-"]
        benchmarks = [f.replace("/logs/", "/benchmarks/", 1).removesuffix(".log") + ".tsv"
                      for f in logs]  # fmt: skip
        for path in (row["output_file"], *logs, *benchmarks):
            owner[path].add(job)
    shared = {path: jobs for path, jobs in owner.items() if len(jobs) > 1}
    assert not shared
    d = resumed["dir"]
    stray = []
    for path in (d / ".test").rglob("*"):
        rel = str(path.relative_to(d))
        if path.is_file() and not WORKFLOW_FILES.fullmatch(rel):
            if not any(rel == o or rel.startswith(o + "/") for o in owner):
                stray.append(rel)
    assert not stray  # no temporaries, no checkpoints, no file outside the declared ones


def test_mlflow_holds_one_finished_run_per_training(resumed):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=resumed["env"]["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    by_dir = collections.defaultdict(list)
    for run in runs:
        by_dir[run.data.tags["pgrpo.run_dir"]].append(run)
    expected = {str(r.relative_to(resumed["dir"])) for r in trainings(resumed["dir"])}
    assert set(by_dir) == expected and len(expected) == 6
    for found in by_dir.values():
        # One finished run; a job killed before its first checkpoint started over in a new
        # run and marked the old one KILLED (never left RUNNING).
        assert {r.info.status for r in found} <= {"FINISHED", "KILLED"}
        finished_runs = [r for r in found if r.info.status == "FINISHED"]
        assert len(finished_runs) == 1
        for r in found:
            if r.info.status == "KILLED":
                assert r.data.tags["pgrpo.superseded_by"] == finished_runs[0].info.run_id
