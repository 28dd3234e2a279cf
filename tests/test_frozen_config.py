"""Nothing one invocation does changes another's settings: parsing the workflow writes nothing,
and every job reads the config its own invocation resolved (outputs/configs/<sha256>.yaml,
written by onstart and named by its content), even while a dry run with another config
happens beside it."""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import yaml
from pipeline_run import REPO, TEST_CONFIG, environment, snakemake, snakemake_command

OTHER_LR = 0.0123  # a learning rate the .test config does not use


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root``: (size, mtime in ns)."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


def git_status() -> str:
    done = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=REPO,
                          capture_output=True, text=True, check=True)  # fmt: skip
    # Python's bytecode caches come and go with whatever else runs (the other test worker).
    noise = (".snakemake", "__pycache__")
    return "\n".join(line for line in done.stdout.splitlines() if not any(n in line for n in noise))


def other_config(folder: Path) -> Path:
    path = folder / "other.yaml"
    path.write_text(yaml.safe_dump({"train": {"learning_rate": OTHER_LR}}))
    return path


def test_the_snapshot_is_named_by_its_content(pipeline):
    (snapshot,) = (pipeline["dir"] / ".test/outputs/configs").glob("*.yaml")
    assert hashlib.sha256(snapshot.read_bytes()).hexdigest().startswith(snapshot.stem)
    assert pipeline["config"]["train"]["learning_rate"] != OTHER_LR


def test_a_dry_run_with_another_config_writes_nothing(pipeline, tmp_path):
    """`snakemake -n` with other settings plans re-runs, and leaves the finished run's
    folder and the repository's git status exactly as they were."""
    workdir = pipeline["dir"]
    before, status = tree(workdir / ".test"), git_status()
    done = snakemake(workdir, "-n", "--configfile", str(TEST_CONFIG), str(other_config(tmp_path)),
                     env=pipeline["env"])  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    planned = set(re.findall(r"^(\w+)\s+\d+$", done.stdout.split("Job stats:", 1)[1], re.M))
    # The other learning rate re-trains, and only what depends on training: the snapshot's
    # new name is no reason to re-run the rules that do not read the train section.
    assert "train" in planned and not planned & {
        "prepare_movielens",
        "embed_users",
        "cluster_users",
    }
    assert tree(workdir / ".test") == before
    assert git_status() == status


@pytest.fixture
def copy_of_the_run(pipeline, tmp_path):
    """The session's finished run copied (timestamps kept), with a fresh MLflow store."""
    workdir = tmp_path / "run"
    shutil.copytree(pipeline["dir"], workdir, symlinks=True,
                    ignore=shutil.ignore_patterns("mlflow.db*", "mlartifacts"))  # fmt: skip
    return workdir


def test_jobs_keep_their_config_while_a_dry_run_with_another_one_parses(pipeline, copy_of_the_run):
    """Two trainings run one after the other; while the first runs (held still), `snakemake
    -n` parses the workflow with another learning rate. Both trainings read their own invocation's
    config: MLflow records the .test learning rate for both."""
    workdir = copy_of_the_run
    env = environment(workdir)
    clustering = pipeline["config"]["clustering"]
    partition = f"{clustering['method']}_k{clustering['num_clusters']}"
    folder = workdir / f".test/outputs/tiny/movielens/{partition}"
    runs = sorted(folder / f"seed0/{method}/adapter" for method in ("grpo", "pgrpo"))
    assert len(runs) == 2  # grpo and pgrpo of seed 0
    targets = [str(p.relative_to(workdir)) for p in runs]
    cmd = snakemake_command(workdir, "--cores", "1", "--forcerun", "train", "--", *targets)
    logs = workdir / ".test/outputs/logs/train/tiny"
    pattern = f"movielens_{partition}_seed0_*.log"
    for log in logs.glob(pattern):
        log.unlink()  # each job writes its own again when it starts
    real = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while not any(logs.glob(pattern)):  # the first training started
            assert real.poll() is None and time.monotonic() < deadline, "no training started"
            time.sleep(0.2)
        # Held still (SIGSTOP) while the dry run parses, so that the first training is
        # surely running, and the second not yet started, however fast the machine.
        held = [psutil.Process(real.pid), *psutil.Process(real.pid).children(recursive=True)]
        for proc in held:
            proc.suspend()
        try:
            dry = snakemake(workdir, "-n", "--configfile", str(TEST_CONFIG),
                            str(other_config(workdir)), env=env)  # fmt: skip
            started = len(list(logs.glob(pattern)))
        finally:
            for proc in held:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.resume()
        assert dry.returncode == 0, dry.stderr[-3000:]
        output, _ = real.communicate(timeout=1200)
    finally:
        real.kill()
    assert real.returncode == 0, output[-3000:]
    assert started == 1, "the second training started before the dry run ended: untested"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    found = client.search_runs([e.experiment_id for e in client.search_experiments()])
    rates = [r.data.params["train.learning_rate"] for r in found]
    assert len(rates) == 2 and all(float(rate) != OTHER_LR for rate in rates), rates


def test_parsing_the_workflow_imports_no_torch(tmp_path):
    """`snakemake -n` reads the config and plans; it needs none of the training stack (torch
    alone takes about 1.5 s and 180 MB to import)."""
    import sys

    cmd = [sys.executable, "-X", "importtime", "-m", "snakemake", "--snakefile",
           str(REPO / "Snakefile"), "--directory", str(tmp_path), "--configfile",
           str(TEST_CONFIG), "--cores", "1", "-n"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}  # fmt: skip
    assert "pgrpo.config" in imported  # the parse was measured
    assert "torch" not in imported and "transformers" not in imported
