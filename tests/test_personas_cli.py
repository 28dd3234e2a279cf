"""The personas task through the entry points the workflow will call: prepare -> embed the
profiles -> cluster, with the adjusted Rand index against the true personas."""

from __future__ import annotations

import json

import pytest
import yaml
from entrypoints import one_error_line, run_entry

from pgrpo.io import read_jsonl


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("personas")

    def run(noise: float, name: str) -> dict:
        config = root / f"{name}.yaml"
        config.write_text(yaml.safe_dump({"personas": {"num_users": 120, "profile_noise": noise}}))
        data, embeddings, clusters = root / name, root / f"{name}.npz", root / f"{name}.json"
        for args in (
            ("pgrpo.prepare", "--task", "personas", "--out", str(data)),
            ("pgrpo.embed", "--task", "personas", "--data", str(data), "--out", str(embeddings)),
            ("pgrpo.cluster", "--embeddings", str(embeddings), "--num-clusters", "7",
             "--labels", str(data / "users.jsonl"), "--out", str(clusters)),
        ):  # fmt: skip
            done = run_entry(args[0], "--config", str(config), *args[1:])
            assert done.returncode == 0, done.stderr
        return {"data": data, "clusters": json.loads(clusters.read_text()), "config": config}

    return run(0.0, "clean"), run(0.5, "noisy")


@pytest.mark.slow
def test_prepare_writes_users_and_examples(chain):
    data = chain[0]["data"]
    users = read_jsonl(data / "users.jsonl")
    assert len(users) == 120
    assert len(read_jsonl(data / "train.jsonl")) == 120 * 4  # 5 requests, the last is test
    assert len(read_jsonl(data / "test.jsonl")) == 120


@pytest.mark.slow
def test_clusters_recover_the_personas_less_well_with_noisier_profiles(chain):
    clean, noisy = (c["clusters"] for c in chain)
    assert clean["num_clusters"] == 7 and sum(clean["sizes"]) == 120
    assert clean["adjusted_rand_index"] > 0.5
    assert noisy["adjusted_rand_index"] < clean["adjusted_rand_index"]


@pytest.mark.slow
def test_users_without_a_true_group_are_named(chain, tmp_path):
    clean = chain[0]
    truth = tmp_path / "users.jsonl"
    truth.write_text(
        "\n".join(json.dumps(u) for u in read_jsonl(clean["data"] / "users.jsonl")[1:])
    )
    embeddings = clean["data"].parent / "clean.npz"
    done = run_entry(
        "pgrpo.cluster", "--config", str(clean["config"]), "--embeddings", str(embeddings),
        "--labels", str(truth), "--out", str(tmp_path / "c.json"),
    )  # fmt: skip
    assert "no true group for 1 users" in one_error_line(done)
    assert not (tmp_path / "c.json").exists()
