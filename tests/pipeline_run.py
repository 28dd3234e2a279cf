"""The `.test` DAG run once per test session, shared by the pipeline, MLflow, SLURM and DVC
tests (conftest's ``pipeline`` fixture).

Where the run goes is ``PGRPO_TEST_EXECUTOR``:

* ``slurm``: through the SLURM cluster that ``.ci/slurm-up`` starts, with ``--profile
  profiles/slurm`` (CI sets this, so a missing cluster fails the run instead of skipping);
* ``local``: ``--cores 2`` on this machine;
* unset: SLURM when ``sinfo`` lists a usable node, else local.

The run leaves ``pipeline_run.json`` (executor and log) in its folder. While working on the
tests, ``PGRPO_TEST_PIPELINE=<that folder>`` reuses a finished run instead of a new one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEST_CONFIG = REPO / ".test/config.yaml"


def slurm_available() -> bool:
    """True when a SLURM controller answers and one of its nodes can take jobs."""
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                              timeout=30)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return False
    states = done.stdout.split()
    return done.returncode == 0 and any(s.rstrip("*") in ("idle", "mixed") for s in states)


def executor() -> str:
    choice = os.environ.get("PGRPO_TEST_EXECUTOR", "")
    if choice not in ("", "slurm", "local"):
        raise ValueError(f"PGRPO_TEST_EXECUTOR={choice!r}: expected slurm, local or unset")
    return choice or ("slurm" if slurm_available() else "local")


# The judge's API key variable (config judge.api_key_env) holds a fake key during the run:
# tests/test_secrets.py checks that no file of the run contains it.
API_KEY_ENV = "PGRPO_JUDGE_API_KEY"


def environment(workdir: Path, api_key: str | None = None) -> dict:
    """The environment of the run: this venv first on PATH, a fresh MLflow store, a fake
    judge API key (``api_key``, default a new random one)."""
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir}/mlflow.db"
    env[API_KEY_ENV] = api_key or f"sk-pgrpo-fake-{uuid.uuid4().hex}"
    return env


def snakemake_command(workdir: Path, *args: str, executor: str = "local") -> list[str]:
    """``snakemake`` on the `.test` config in ``workdir``; ``executor="slurm"`` submits
    through SLURM with the repository's profile, else ``--cores 2``."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
    cmd += ["--directory", str(workdir), "--configfile", str(TEST_CONFIG)]
    if executor == "slurm":
        cmd += ["--profile", str(REPO / "profiles/slurm")]
    else:
        cmd += ["--cores", "2"]
    return [*cmd, *args]


def snakemake(workdir: Path, *args: str, env: dict, executor: str = "local"):
    """Run :func:`snakemake_command` to the end; the CompletedProcess (text output)."""
    cmd = snakemake_command(workdir, *args, executor=executor)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=2400)


def run_pipeline(workdir: Path) -> dict:
    """Run the whole `.test` DAG in ``workdir`` (or reuse ``PGRPO_TEST_PIPELINE``); what the
    tests need to know about it."""
    import yaml

    if os.environ.get("PGRPO_TEST_PIPELINE"):
        workdir = Path(os.environ["PGRPO_TEST_PIPELINE"]).resolve()
        record = json.loads((workdir / "pipeline_run.json").read_text())
        env = environment(workdir, record.get("api_key"))
    else:
        env = environment(workdir)
        record = {"executor": executor(), "api_key": env[API_KEY_ENV]}
        proc = snakemake(workdir, env=env, executor=record["executor"])
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
        record["log"] = proc.stdout + proc.stderr
        (workdir / "pipeline_run.json").write_text(json.dumps(record))
    (snapshot,) = (workdir / ".test/outputs/configs").glob("*.yaml")  # one config, one file
    config = yaml.safe_load(snapshot.read_text())
    return {"dir": workdir, "env": env, "config": config, **record}
