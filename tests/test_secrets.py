"""API keys live only in the environment: the judge sends its key to the endpoint, and no
file of a run (outputs, results, logs, Snakemake's records, the MLflow store and artifacts)
and no console output ever contains it.

The session's `.test` run had a fake key in ``PGRPO_JUDGE_API_KEY`` for all of its jobs; a
copy of it then judges again through an HTTP endpoint on localhost that checks the key.
"""

from __future__ import annotations

import shutil

import pytest
import yaml
from localhost import ChatServer, serving
from pipeline_run import API_KEY_ENV, TEST_CONFIG, snakemake

pytestmark = pytest.mark.slow


def files_containing(root, secret: bytes) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.name != "pipeline_run.json":
            if secret in path.read_bytes():  # pipeline_run.json records the fake key itself
                found.append(str(path.relative_to(root)))
    return found


def test_the_judge_key_is_sent_and_never_written(pipeline, tmp_path):
    key = pipeline["env"][API_KEY_ENV]
    assert key.startswith("sk-pgrpo-fake-")
    work = tmp_path / "work"
    shutil.copytree(pipeline["dir"], work, symlinks=True)
    env = dict(pipeline["env"], MLFLOW_TRACKING_URI=f"sqlite:///{work}/mlflow.db")
    httpd = ChatServer()
    httpd.mode = "always-first"
    with serving(httpd) as base:
        judge = {"backend": "http", "base_url": f"{base}/v1", "api_model": "judge-test",
                 "api_key_env": API_KEY_ENV, "timeout_s": 30, "retries": 0}  # fmt: skip
        overrides = tmp_path / "judge.yaml"
        overrides.write_text(yaml.safe_dump({"judge": judge}))
        done = snakemake(
            work, "--configfile", str(TEST_CONFIG), str(overrides),
            "--rerun-triggers", "mtime", "--forcerun", "judge_winrates", env=env,
        )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "judge_winrates" in done.stdout + done.stderr  # the judge jobs ran again
    assert httpd.requests, "the HTTP judge was never asked"
    assert {r["auth"] for r in httpd.requests} == {f"Bearer {key}"}

    assert key not in done.stdout + done.stderr
    assert files_containing(work, key.encode()) == []
