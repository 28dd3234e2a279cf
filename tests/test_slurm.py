"""The `.test` DAG went through a real SLURM cluster (CI: `.ci/slurm-up`, then the session's
pipeline run with ``--profile profiles/slurm``): every job that is not a local rule was
submitted with sbatch, ran as a SLURM job that the controller logged as done, and the
training runs record their SLURM job id in MLflow. A training job with an accelerate config
file asks SLURM for that many GPUs (count-only GPUs of the CI node) and trains with that
many processes."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from pipeline_run import TEST_CONFIG, environment, snakemake, snakemake_command

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def local_rules() -> set[str]:
    """The rules that run on the submitting node: the Snakefile's `localrules:` block, and the
    raw data rules of every task (TaskSpec.sources; workflow/rules/data.smk makes them local)."""
    from pgrpo.config import load_configs
    from pgrpo.tasks.registry import config_specs

    block = re.search(r"(?m)^localrules:\n((?:    \w+,\n)+)", (REPO / "Snakefile").read_text())
    config = load_configs([REPO / "config.yaml", TEST_CONFIG])
    sources = {s.rule for spec in config_specs(config).values() for s in spec.sources(config)}
    return set(re.findall(r"\w+", block.group(1))) | sources


LOCAL_RULES = local_rules()


@pytest.fixture(scope="module")
def slurm_run(pipeline):
    if pipeline["executor"] != "slurm":
        pytest.skip("the pipeline ran locally: no SLURM cluster (start one: sudo .ci/slurm-up)")
    return pipeline


def _submitted(log: str) -> dict[str, str]:
    """SLURM job id -> rule of every submission in the run's log (the plugin names each
    job's log .snakemake/slurm_logs/rule_<rule>/...)."""
    pattern = r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: \S*/rule_(\w+)/"
    return dict(re.findall(pattern, log))


def _controller_log() -> Path:
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                            check=True, timeout=30).stdout  # fmt: skip
    return Path(re.search(r"SlurmctldLogFile\s*=\s*(\S+)", config).group(1))


def test_every_non_local_job_was_submitted_to_slurm(slurm_run):
    log = slurm_run["log"]
    submitted = _submitted(log)
    stats = log.split("Job stats:")[1].split("total")[0]
    planned = {rule: int(n) for rule, n in re.findall(r"(?m)^(\w+)\s+(\d+)$", stats)}
    remote = {rule: n for rule, n in planned.items() if rule not in LOCAL_RULES}
    assert sum(remote.values()) > 50 and planned["train"] > 0
    ran = {rule: list(submitted.values()).count(rule) for rule in set(submitted.values())}
    assert ran == remote  # every non-local job, once, each its own SLURM job


def test_the_controller_ran_each_submitted_job_to_completion(slurm_run):
    text = _controller_log().read_text(errors="replace")
    done = set(re.findall(r"_job_complete: JobId=(\d+) done", text))
    failed = set(re.findall(r"_job_complete: JobId=(\d+) WEXITSTATUS [1-9]", text))
    ids = set(_submitted(slurm_run["log"]))
    assert ids <= done
    assert not ids & failed


def test_each_training_run_records_the_slurm_job_that_trained_it(slurm_run):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=slurm_run["env"]["MLFLOW_TRACKING_URI"])
    name = slurm_run["config"]["mlflow"]["experiment"]
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    ids = set(_submitted(slurm_run["log"]))
    assert runs and {r.data.tags["slurm_job_id"] for r in runs} <= ids
    assert len({r.data.tags["slurm_job_id"] for r in runs}) == len(runs)


def _job_record(job_id: str) -> str:
    done = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True,
                          timeout=30)  # fmt: skip
    assert done.returncode == 0, f"the controller forgot job {job_id}: {done.stderr}"
    return done.stdout


# The training job the tests below run again in a copy of the session's run.
RUN = ".test/outputs/tiny/movielens/kmeans_k3/seed0/pgrpo"


def _copy_of(slurm_run: dict, tmp_path: Path) -> tuple[Path, dict]:
    """A copy of the session's run folder and its environment (its own MLflow store)."""
    work = tmp_path / "work"
    shutil.copytree(slurm_run["dir"], work, symlinks=True)
    return work, environment(work)


def test_a_2gpu_training_job_gets_2_gpus_and_trains_with_2_processes(slurm_run, tmp_path):
    from mlflow.tracking import MlflowClient

    work, env = _copy_of(slurm_run, tmp_path)
    # No GPU on the CI cluster: its 2 "GPUs" are CPU processes (launch.cpu_fallback). A
    # file, as --config passes a nested true as the string 'true'.
    gpus = tmp_path / "2gpu.yaml"
    gpus.write_text("launch: {accelerate_config: 2gpu, cpu_fallback: true}\n")
    proc = snakemake(work, f"{RUN}/metrics.jsonl", "--force", "--configfile",
                     str(TEST_CONFIG), str(gpus), env=env, executor="slurm")  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ((job_id, rule),) = _submitted(proc.stdout + proc.stderr).items()
    assert rule == "train"
    record = _job_record(job_id)
    assert re.search(r"gres[:/]gpu[:=]2\b", record), record
    assert "pgrpo.launch --config_file" in proc.stdout + proc.stderr  # accelerate launch
    assert "workflow/accelerate/2gpu.yaml -m pgrpo.train" in proc.stdout + proc.stderr
    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    name = slurm_run["config"]["mlflow"]["experiment"]
    (latest,) = client.search_runs(
        [client.get_experiment_by_name(name).experiment_id],
        filter_string=f"tags.slurm_job_id = '{job_id}'",
    )
    assert latest.data.tags["processes"] == "2" and latest.info.status == "FINISHED"


def test_a_preempted_training_job_checkpoints_and_its_retry_resumes(slurm_run, tmp_path):
    """SIGTERM to a running training job (what SLURM sends on preemption or at the time limit,
    here `scancel --signal=TERM`): it checkpoints and fails, the profile's retry resubmits it,
    and the new job resumes from the checkpoint into the same MLflow run."""
    from mlflow.tracking import MlflowClient

    work, env = _copy_of(slurm_run, tmp_path)
    longer = tmp_path / "longer.yaml"
    longer.write_text("train: {steps: 200, checkpoint_every: 1}\n")
    cmd = snakemake_command(work, f"{RUN}/metrics.jsonl", "--force", "--configfile",
                            str(TEST_CONFIG), str(longer), executor="slurm")  # fmt: skip
    log = tmp_path / "snakemake.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline, signalled = time.monotonic() + 600, None
        while proc.poll() is None and time.monotonic() < deadline and signalled is None:
            if list((work / RUN).glob("checkpoints/step-*/state.pt")):
                queue = subprocess.run(["squeue", "-h", "-o", "%i %k"], capture_output=True,
                                       text=True, timeout=30).stdout.split("\n")  # fmt: skip
                jobs = [line.split()[0] for line in queue if "rule_train_" in line]
                if jobs:
                    signalled = jobs[0]
                    subprocess.run(["scancel", "--signal=TERM", signalled], check=True)
            time.sleep(0.2)
        assert proc.wait(timeout=900) == 0, log.read_text()[-3000:]
    assert signalled is not None, "the training ended before it could be signalled"
    first, retry = _submitted(log.read_text())  # job ids, in submission order
    assert first == signalled
    train_log = work / ".test/outputs/logs/train/tiny/movielens_kmeans_k3_seed0_pgrpo.log"
    resumed = re.search(
        r"resuming from \S+step-(\d{6}) \(step (\d+) of 200\)", train_log.read_text()
    )
    assert resumed and 0 < int(resumed[2]) < 200
    assert len((work / RUN / "metrics.jsonl").read_text().splitlines()) == 200
    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    name = slurm_run["config"]["mlflow"]["experiment"]
    experiment = client.get_experiment_by_name(name).experiment_id

    def tagged(job_id: str) -> list:
        return client.search_runs([experiment], filter_string=f"tags.slurm_job_id = '{job_id}'")

    # One run: the retry continued (and re-tagged) the preempted job's run.
    (latest,) = tagged(retry)
    assert tagged(first) == [] and latest.info.status == "FINISHED"
    history = client.get_metric_history(latest.info.run_id, "reward_mean")
    assert sorted(m.step for m in history) == list(range(200))
