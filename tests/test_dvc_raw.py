"""DVC versions the raw data: the committed ``resources/raw/*.dvc`` files hold the checksums of
exactly what the session's `.test` run extracted from the pinned wheels; pushed to the
project's default DVC remote (a local folder here) and deleted, ``dvc pull`` brings the same
bytes back; an edited raw file shows as modified."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from pgrpo.data.sources import WHEEL_SOURCES
from pgrpo.io import sha256_of

REPO = Path(__file__).resolve().parents[1]
TRACKED = {"ml-100k": "ml-100k", "clothing-reviews": "clothing-reviews"}  # folder -> source


def dvc(repo: Path, env: dict, *args: str) -> str:
    done = subprocess.run(["dvc", *args], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, f"dvc {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout


def status(repo: Path, env: dict) -> dict:
    return json.loads(dvc(repo, env, "status", "--json", *dvc_files(repo)))


def dvc_files(repo: Path) -> list[str]:
    return [f"resources/raw/{name}.dvc" for name in TRACKED]


@pytest.fixture(scope="module")
def repo(pipeline, tmp_path_factory):
    """A git + DVC repository with the project's DVC config and .dvc files and, in the
    workspace, the raw data the `.test` run's extract rules wrote."""
    root = tmp_path_factory.mktemp("dvc-raw")
    repo = root / "repo"
    (repo / "resources/raw").mkdir(parents=True)
    env = pipeline["env"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    dvc(repo, env, "init", "-q")
    shutil.copy(REPO / ".dvc/config", repo / ".dvc/config")
    shutil.copy(REPO / ".dvcignore", repo / ".dvcignore")
    raw = pipeline["dir"] / pipeline["config"]["paths"]["resources"] / "raw"
    for name in TRACKED:
        shutil.copy(REPO / f"resources/raw/{name}.dvc", repo / "resources/raw")
        shutil.copytree(raw / name, repo / "resources/raw" / name)
    dvc(repo, env, "remote", "modify", "--local", "local", "url", str(root / "remote"))
    return repo, env


@pytest.mark.slow
def test_the_committed_checksums_are_those_of_the_extracted_data(repo):
    repo, env = repo
    # Same content, not yet in this repository's cache (a changed file would be "modified").
    assert status(repo, env) == {
        f: [{"changed outs": {f.removesuffix(".dvc"): "not in cache"}}] for f in dvc_files(repo)
    }
    committed = {f: (repo / f).read_text() for f in dvc_files(repo)}
    dvc(repo, env, "commit", "--force", *dvc_files(repo))
    assert {f: (repo / f).read_text() for f in dvc_files(repo)} == committed  # unchanged
    assert status(repo, env) == {}


@pytest.mark.slow
def test_push_then_pull_restores_the_same_bytes(repo):
    repo, env = repo
    dvc(repo, env, "commit", "--force", *dvc_files(repo))
    dvc(repo, env, "push")
    for name in TRACKED:
        shutil.rmtree(repo / "resources/raw" / name)
    shutil.rmtree(repo / ".dvc/cache")
    dvc(repo, env, "pull")
    for folder, source in TRACKED.items():
        pinned = WHEEL_SOURCES[source][3]
        got = {p.name: sha256_of(p) for p in (repo / "resources/raw" / folder).iterdir()}
        assert got == pinned


def test_an_edited_raw_file_shows_as_modified(repo):
    repo, env = repo
    dvc(repo, env, "commit", "--force", *dvc_files(repo))
    with open(repo / "resources/raw/ml-100k/ml-100k.item", "a") as f:
        f.write("1683\tone more movie\t1998\n")
    assert status(repo, env) == {
        "resources/raw/ml-100k.dvc": [{"changed outs": {"resources/raw/ml-100k": "modified"}}]
    }
