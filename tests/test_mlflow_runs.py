"""What the `.test` pipeline run left in MLflow, read back with ``MlflowClient``: one run per
training job with its tags, step metrics, adapter and final P-GRPO statistics as artifacts,
and every evaluation of the adapter joined to the same run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pgrpo.config import task_config
from pgrpo.io import sha256_of

METHODS = ("grpo", "pgrpo")
MAIN = {"movielens": "kmeans_k3", "personas": "kmeans_k7", "reviews": "groups"}
STEP_METRICS = ("reward_mean", "loss", "kl", "clip_fraction", "zero_std_group_fraction")
TAGS = ("task", "partition", "method", "seed", "group_size")


@pytest.fixture(scope="module")
def tracked(pipeline):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=pipeline["env"]["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name(pipeline["config"]["mlflow"]["experiment"])
    runs = client.search_runs([experiment.experiment_id])
    return {**pipeline, "client": client, "runs": runs}


def _group_size(tracked, task: str) -> str:
    return str(task_config(tracked["config"], task)["train"]["group_size"])


def _folder(tracked, r) -> Path:
    task, part, method, seed, g = (r.data.tags[t] for t in TAGS)
    folder = method if g == _group_size(tracked, task) else f"{method}-g{g}"  # figure 7's runs
    return tracked["dir"] / f".test/outputs/tiny/{task}/{part}/seed{seed}/{folder}"


def _run_of(tracked, task: str, part: str, method: str, seed: int):
    want = (task, part, method, str(seed), _group_size(tracked, task))
    (r,) = [r for r in tracked["runs"] if tuple(r.data.tags[t] for t in TAGS) == want]
    return r


def test_one_run_per_training_job(tracked):
    config = tracked["config"]
    seeds = [str(config["seed"] + i) for i in range(config["seeds"])]
    g = {t: _group_size(tracked, t) for t in MAIN}
    expected = [(t, p, m, s, g[t]) for t, p in MAIN.items() for m in METHODS for s in seeds]
    expected += [("movielens", p, "pgrpo", s, g["movielens"]) for p in ("kmeans_k1", "random_k3")
                 for s in seeds]  # fmt: skip
    sizes = [str(n) for n in config["figures"]["group_sizes"] if str(n) != g["movielens"]]
    expected += [("movielens", MAIN["movielens"], m, s, n) for n in sizes for m in METHODS
                 for s in seeds]  # fmt: skip
    found = sorted(tuple(r.data.tags[t] for t in TAGS) for r in tracked["runs"])
    assert found == sorted(expected)


def test_every_step_metric_of_every_run(tracked):
    client, steps = tracked["client"], tracked["config"]["train"]["steps"]
    for r in tracked["runs"]:
        task, _, method, seed, _ = (r.data.tags[t] for t in TAGS)
        assert r.info.status == "FINISHED"
        assert r.data.params["train.steps"] == str(steps)
        assert r.info.run_name == f"{task}-{method}-seed{seed}"
        for name in STEP_METRICS:
            history = client.get_metric_history(r.info.run_id, name)
            assert sorted(m.step for m in history) == list(range(steps)), name
        assert [m for m in r.data.metrics if m.startswith("reward_mean/cluster_")]
        # MLflow holds what the run wrote to metrics.jsonl, step by step.
        local = (_folder(tracked, r) / "metrics.jsonl").read_text().splitlines()
        logged = [json.loads(line)["reward_mean"] for line in local]
        history = client.get_metric_history(r.info.run_id, "reward_mean")
        assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(logged)


def test_tags_identify_code_config_data_and_clusters(tracked):
    import subprocess

    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=Path(__file__).parent).stdout.strip()  # fmt: skip
    out = tracked["dir"] / ".test"
    for r in tracked["runs"]:
        tags, task = r.data.tags, r.data.tags["task"]
        assert tags["git_commit"] == head
        assert len(tags["config_hash"]) >= 12
        data = out / "resources" / task / "train.jsonl"
        assert tags["data_sha256"] == sha256_of(data)
        part = tags["partition"]
        clusters = out / ("resources/reviews/groups.json" if task == "reviews"
                          else f"outputs/{task}/clusters/{part}.json")  # fmt: skip
        assert tags["clusters_sha256"] == sha256_of(clusters)
        assert int(tags["num_clusters"]) == json.loads(clusters.read_text())["num_clusters"]
        assert tags["pgrpo.run_dir"] == str(_folder(tracked, r).relative_to(tracked["dir"]))
    for task in MAIN:  # one config for every run of a task (run flags are tags of their own)
        assert len({r.data.tags["config_hash"] for r in tracked["runs"]
                    if r.data.tags["task"] == task}) == 1  # fmt: skip


def test_adapter_and_final_cluster_statistics_are_artifacts(tracked):
    import mlflow

    config = tracked["config"]
    for r in tracked["runs"]:
        folder, method = _folder(tracked, r), r.data.tags["method"]
        names = {a.path for a in tracked["client"].list_artifacts(r.info.run_id, "adapter")}
        files = [p for p in (folder / "adapter").iterdir() if not p.name.startswith(".")]
        assert names == {f"adapter/{p.name}" for p in files}  # not Snakemake's time stamp
        logged = mlflow.artifacts.download_artifacts(
            run_id=r.info.run_id, artifact_path="adapter/adapter_model.safetensors",
            tracking_uri=tracked["env"]["MLFLOW_TRACKING_URI"])  # fmt: skip
        assert sha256_of(logged) == sha256_of(folder / "adapter/adapter_model.safetensors")
        stats_files = tracked["client"].list_artifacts(r.info.run_id)
        if method == "grpo":
            assert "cluster_stats.json" not in {a.path for a in stats_files}
            continue
        stats = mlflow.artifacts.load_dict(f"{r.info.artifact_uri}/cluster_stats.json")
        train = task_config(config, r.data.tags["task"])["train"]
        seen = train["steps"] * train["prompts_per_step"] * int(r.data.tags["group_size"])
        assert stats["num_clusters"] == int(r.data.tags["num_clusters"])
        assert sum(c["count"] for c in stats["clusters"]) == seen  # every reward merged once


def test_evaluations_join_the_training_run(tracked):
    config = tracked["config"]
    seed = config["seed"]
    for task, part in MAIN.items():
        for method in METHODS:
            r = _run_of(tracked, task, part, method, seed)
            folder = _folder(tracked, r)
            evaluation = json.loads((folder / "eval.json").read_text())
            assert r.data.metrics["eval/reward"] == pytest.approx(evaluation["reward"])
            for cluster, cell in evaluation["per_cluster"].items():
                name = f"eval/per_cluster/{cluster}/reward"
                assert r.data.metrics[name] == pytest.approx(cell["reward"])
            general = json.loads((folder / "general.json").read_text())
            assert r.data.metrics["general/lm_loss"] == pytest.approx(general["lm_loss"])
            assert r.data.metrics["general/mc_accuracy"] == pytest.approx(general["mc_accuracy"])
            assert not [m for m in r.data.metrics if m.startswith("general/settings")]
    for size in config["figures"]["candidate_sizes"][1:]:  # figure 3's extra candidate sets
        r = _run_of(tracked, "movielens", MAIN["movielens"], "grpo", seed)
        variant = json.loads((_folder(tracked, r) / f"c{size}/eval.json").read_text())
        assert r.data.metrics[f"eval_c{size}/reward"] == pytest.approx(variant["reward"])
