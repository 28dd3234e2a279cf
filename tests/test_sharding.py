"""Sharded training (FSDP2, pgrpo/sharding.py) on two CPU processes (gloo), launched through
the sharded 8B accelerate file (`8gpu_fsdp`, its process count overridden to 2): each process
holds half of the weights, a step is the step of one unsharded process, a stopped run resumes
exactly, and `pgrpo.train` with `launch.sharding: fsdp` writes the adapter and metrics of
one process, as 2 data-parallel processes do. CUDA/NCCL runs the same code; only the process
group differs."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from entrypoints import launch_argv
from safetensors.torch import load_file
from tiny_training import launch_steps

from pgrpo.distributed import launch_plan

pytestmark = [pytest.mark.slow, pytest.mark.numerics]

FSDP = "8gpu_fsdp"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from tiny_training import tiny_training_inputs

    model = tmp_path_factory.mktemp("sharding") / "tiny"
    tiny_training_inputs(model)
    return model


@pytest.fixture(scope="module")
def runs(tiny):
    one = launch_steps(None, tiny, tiny.parent / "one")
    return one, launch_steps(FSDP, tiny, tiny.parent / "fsdp", processes=2)


def test_the_sharded_file_asks_for_8_gpus_and_fsdp():
    from accelerate.commands.config.config_args import load_config_from_file

    plan = {"launch": {"accelerate_config": FSDP}, "train": {"num_processes": 1}}
    prefix, processes = launch_plan(plan)
    assert processes == 8 and prefix.endswith(f"workflow/accelerate/{FSDP}.yaml")
    loaded = load_config_from_file(prefix.split()[-1])
    assert loaded.distributed_type.value == "FSDP" and loaded.fsdp_config["fsdp_version"] == 2


def test_each_process_holds_half_of_the_weights(runs):
    (single,), two = runs
    assert [(r["rank"], r["world"], r["sharded"]) for r in two] == [(0, 2, True), (1, 2, True)]
    assert not single["sharded"]
    whole = single["local_numel"]
    assert sum(r["local_numel"] for r in two) == whole  # every element held exactly once
    for rank in two:
        assert rank["local_numel"] <= 0.51 * whole


def test_a_sharded_step_is_the_step_of_one_process(runs):
    (single,), two = runs
    for rank in two:
        assert rank["rewards"] == single["rewards"] and rank["stats"] == single["stats"]
        assert rank["adapter"].keys() == single["adapter"].keys()
        for name, values in rank["adapter"].items():
            # As in test_multiprocess: float noise of another summation order, not a step.
            torch.testing.assert_close(
                torch.tensor(values), torch.tensor(single["adapter"][name]), rtol=1e-3, atol=2e-4
            )
    moved = [max(abs(v) for v in vals) for n, vals in two[0]["adapter"].items() if "lora_B" in n]
    assert max(moved) > 0


def test_a_stopped_sharded_run_resumes_bit_for_bit(runs, tiny, tmp_path):
    _, two = runs
    folder = tmp_path / "checkpoint"
    args = ("--save-after", "1", "--checkpoint", str(folder))
    launch_steps(FSDP, tiny, tmp_path / "first", *args, processes=2)
    state = torch.load(next(folder.glob("checkpoints/step-*/state.pt")), weights_only=True)
    assert state["trainer"]["sharded"] is True
    # The checkpoint holds full tensors (gathered), not one process's shards.
    for name, value in state["trainer"]["adapter"].items():
        assert list(value.reshape(-1).shape) == [len(two[0]["adapter"][name])]
    resumed = launch_steps(FSDP, tiny, tmp_path / "resumed", "--resume", str(folder), processes=2)
    for rank, whole in zip(resumed, two, strict=True):
        assert rank["stats"] == whole["stats"] and rank["rewards"] == whole["rewards"]
        assert rank["adapter"] == whole["adapter"]


def test_a_data_parallel_checkpoint_is_not_resumed_sharded(runs, tiny, tmp_path):
    _, two = runs
    folder = tmp_path / "checkpoint"
    args = ("--save-after", "1", "--checkpoint", str(folder))
    launch_steps("2gpu", tiny, tmp_path / "first", *args)
    resumed = launch_steps(FSDP, tiny, tmp_path / "re", "--resume", str(folder), processes=2)
    assert not list(folder.glob("checkpoints/step-*"))  # the other run's checkpoint is gone
    for rank, whole in zip(resumed, two, strict=True):  # started over: the sharded run
        assert rank["adapter"] == whole["adapter"]


def train(pipeline: dict, root: Path, name: str, processes: int, sharding=None) -> Path:
    """`pgrpo.train` of the `.test` inputs on ``processes`` CPU processes, launched as the
    workflow launches ``train.num_processes``; returns its output folder."""
    config = copy.deepcopy(pipeline["config"])
    config["train"].update(steps=3, num_processes=processes, checkpoint_every=1)
    config["launch"]["sharding"] = sharding
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    d, paths = pipeline["dir"], config["paths"]
    resources, outputs = d / paths["resources"], d / paths["outputs"]
    out = root / name
    cmd = [
        *launch_argv(config), "-m", "pgrpo.train", "--config", str(path),
        "--task", "movielens", "--method", "pgrpo",
        "--model", str(resources / "models/tiny"), "--data", str(resources / "movielens"),
        "--clusters", str(outputs / "movielens/clusters/kmeans_k3.json"),
        "--seed", "0", "--no-progress", "--out", str(out),
    ]  # fmt: skip
    env = dict(pipeline["env"], MLFLOW_TRACKING_URI=f"sqlite:///{root}/mlflow.db")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_train_on_two_processes_sharded_or_not_writes_the_one_process_adapter(pipeline, tmp_path):
    """The same run on 1 process, 2 data-parallel processes and 2 sharded ones: the same
    adapter (each process draws its own fresh LoRA matrices from seed + rank; rank 0's are
    given to all, else the processes would train different adapters) and the same rewards;
    the sharded one checkpointed every step and still wrote full tensors. (The `.test` tiny
    model earns no MovieLens reward, so the adapter here is its initialisation; that a
    sharded and a data-parallel update equal one process's is checked above, with a task
    whose reward varies.)"""
    from mlflow.tracking import MlflowClient

    one = train(pipeline, tmp_path, "one", 1)
    runs = {"data-parallel": train(pipeline, tmp_path, "two", 2),
            "sharded": train(pipeline, tmp_path, "sharded", 2, sharding="fsdp")}  # fmt: skip
    theirs = load_file(one / "adapter/adapter_model.safetensors")
    rewards = [json.loads(line)["reward_mean"] for line in (one / "metrics.jsonl").open()]
    assert all(v.abs().max() > 0 for n, v in theirs.items() if "lora_A" in n)
    for kind, out in runs.items():
        ours = load_file(out / "adapter/adapter_model.safetensors")
        assert ours.keys() == theirs.keys(), kind
        for name, value in ours.items():
            assert value.shape == theirs[name].shape, (kind, name)  # not a shard
            torch.testing.assert_close(value, theirs[name], rtol=1e-3, atol=2e-4, msg=kind)
        assert [json.loads(line)["reward_mean"] for line in (out / "metrics.jsonl").open()] == (
            rewards
        ), kind
        assert not (out / "checkpoints").exists()  # saved every step, removed at the end
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    tags = [r.data.tags for r in client.search_runs(
        [e.experiment_id for e in client.search_experiments()])]  # fmt: skip
    assert sorted((t["processes"], t["sharded"]) for t in tags) == [
        ("1", "False"), ("2", "False"), ("2", "True"),
    ]  # fmt: skip
