"""DVC compares two versions of the results: the session's `.test` run is committed as one
version, a parameter is changed (table 4's number of ARC-Easy questions: the tiny model of
`.test` scores 0 on the three tasks, but at chance on ARC-Easy), `dvc repro` re-runs the
pipeline (Snakemake re-runs only what the parameter touches), and `dvc params diff` /
`dvc metrics diff` / `dvc plots diff` report the change between the commit and the
workspace."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pgrpo.config import deep_update

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PROJECT = ("Snakefile", "workflow", "envs", "pgrpo", "dvc.yaml", ".dvcignore")
IGNORED = [".snakemake/", ".test/outputs/", ".test/resources/", "mlflow.db*", "mlruns/",
           "__pycache__/", "*.egg-info/", "report.html", "pipeline_run.json"]  # fmt: skip


def _run(repo: Path, env: dict, *cmd: str, both: bool = False) -> str:
    """stdout of ``cmd`` in ``repo`` (with stderr too when ``both``); a failure fails."""
    done = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, f"{' '.join(cmd)}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done.stdout + done.stderr if both else done.stdout


@pytest.fixture(scope="module")
def versions(pipeline, tmp_path_factory):
    """A git + DVC repository holding the session run as HEAD and a re-run with
    ``general.mc_questions`` halved in the workspace."""
    repo = tmp_path_factory.mktemp("dvc") / "repo"
    shutil.copytree(pipeline["dir"], repo, symlinks=True)  # outputs, .snakemake metadata
    for name in PROJECT:
        source, target = REPO / name, repo / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    # The project's config.yaml as the session run saw it: the .test overrides merged in.
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    deep_update(config, yaml.safe_load((REPO / ".test/config.yaml").read_text()))
    (repo / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (repo / ".gitignore").write_text("\n".join(IGNORED) + "\n")
    env = dict(pipeline["env"], MLFLOW_TRACKING_URI=f"sqlite:///{repo}/mlflow.db")
    _run(repo, env, "git", "init", "-q")
    _run(repo, env, "git", "config", "user.email", "ci@pgrpo")
    _run(repo, env, "git", "config", "user.name", "pgrpo CI")
    _run(repo, env, "dvc", "init", "-q")
    _run(repo, env, "dvc", "config", "core.analytics", "false")
    first = _run(repo, env, "dvc", "repro", both=True)
    _run(repo, env, "git", "add", "-A")
    _run(repo, env, "git", "commit", "-q", "-m", "version 1: the .test run")
    before = config["general"]["mc_questions"]
    config["general"]["mc_questions"] = before // 2
    (repo / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    second = _run(repo, env, "dvc", "repro", both=True)
    return {"repo": repo, "env": env, "first": first, "second": second, "before": before,
            "steps": config["train"]["steps"]}  # fmt: skip


def test_first_repro_reruns_nothing_snakemake_already_made(versions):
    assert "Nothing to be done" in versions["first"]


def test_params_diff_names_the_changed_parameter(versions):
    out = json.loads(_run(versions["repo"], versions["env"], "dvc", "params", "diff", "--json"))
    before = versions["before"]
    assert out == {"config.yaml": {"general.mc_questions": {
        "old": before, "new": before // 2, "diff": before // 2 - before}}}  # fmt: skip


def test_metrics_diff_reports_the_changed_evaluation(versions):
    repo = versions["repo"]
    out = json.loads(_run(repo, versions["env"], "dvc", "metrics", "diff", "--json"))
    assert set(out) == {".test/results/metrics/table4_general.json"}  # only table 4 moved
    (changed,) = out.values()
    assert any(k.endswith(".mc_accuracy") for k in changed), changed
    current = json.loads((repo / ".test/results/metrics/table4_general.json").read_text())
    for key, value in changed.items():
        node = current
        for part in key.split("."):
            node = node[part]
        assert value["new"] == pytest.approx(node)  # DVC reads the re-run's numbers
        assert value["old"] != pytest.approx(node)
    # Snakemake re-ran the general-capability jobs only: no training, no evaluation.
    second = versions["second"]
    assert "General capabilities of" in second
    assert "Training " not in second and "Evaluating " not in second


def test_plots_diff_shows_both_versions_of_the_reward_curves(versions):
    out = _run(versions["repo"], versions["env"], "dvc", "plots", "diff", "HEAD", "--json")
    (plot,) = json.loads(out)["data"]["training reward"]
    assert set(plot["revisions"]) == {"HEAD", "workspace"}
    rows = plot["content"]["data"]["values"]
    steps = versions["steps"]
    for rev in ("HEAD", "workspace"):
        for method in ("grpo", "pgrpo"):
            picked = [r for r in rows if r["rev"] == rev and r["field"] == method]
            assert sorted(int(r["step"]) for r in picked) == list(range(steps))


def test_every_published_metrics_file_is_a_dvc_metric():
    """The committed results' metrics files, the default's and the baselines run's, are all
    declared in dvc.yaml and load, so `dvc metrics diff` compares every one of them."""
    published = {p.relative_to(REPO).as_posix() for p in REPO.glob("results/**/metrics/*.json")}
    assert "results/baselines/metrics/table2_personas.json" in published
    command = [sys.executable, "-m", "dvc", "metrics", "show", "--json"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (revision,) = json.loads(done.stdout).values()
    assert "error" not in revision, revision["error"]
    assert published <= set(revision["data"])
    for path in published:
        assert "error" not in revision["data"][path], (path, revision["data"][path])
        assert revision["data"][path]["data"], path
