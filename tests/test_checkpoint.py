"""A run stopped mid-way and resumed from its checkpoint in a fresh process ends exactly where
an uninterrupted run ends: the P-GRPO statistics, the optimiser and the adapter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.numerics

HERE = Path(__file__).resolve().parent


def train_steps(model: Path, out: Path, *args: str) -> dict:
    cmd = [sys.executable, str(HERE / "train_steps.py"), "--model", str(model), "--out", str(out)]
    done = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "rank0.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from tiny_training import tiny_training_inputs

    root = tmp_path_factory.mktemp("checkpoint")
    model = root / "tiny"
    tiny_training_inputs(model)
    whole = train_steps(model, root / "whole", "--steps", "3")
    checkpoint = root / "state"
    first = train_steps(
        model, root / "first", "--steps", "3", "--save-after", "2", "--checkpoint", str(checkpoint)
    )
    resumed = train_steps(model, root / "resumed", "--steps", "3", "--resume", str(checkpoint))
    return whole, first, resumed, checkpoint


@pytest.mark.slow
def test_resumed_run_restores_the_statistics_exactly(runs):
    whole, first, resumed, _ = runs
    assert sum(first["stats"]["count"]) == 2 * 16  # stopped after 2 of 3 steps
    assert resumed["stats"] == whole["stats"]  # bit for bit
    assert sum(whole["stats"]["count"]) == 3 * 16


@pytest.mark.slow
def test_resumed_run_continues_like_the_uninterrupted_one(runs):
    whole, first, resumed, _ = runs
    assert first["reward_mean"] + resumed["reward_mean"] == whole["reward_mean"]
    assert resumed["advantages"] == whole["advantages"]
    for name, values in whole["adapter"].items():
        torch.testing.assert_close(torch.tensor(resumed["adapter"][name]), torch.tensor(values))


@pytest.mark.slow
def test_checkpoint_holds_only_tensors_and_plain_values(runs):
    *_, checkpoint = runs
    from pgrpo.checkpoint import latest

    folder = latest(checkpoint)
    assert folder.name == "step-000002"
    state = torch.load(folder / "state.pt", weights_only=True)  # refuses pickled objects
    assert state["trainer"]["next_step"] == 2 and state["trainer"]["method"] == "pgrpo"
    assert state["trainer"]["cluster_stats"]["count"].dtype == torch.float64
    rng = torch.load(folder / "rng-rank0.pt", weights_only=True)
    assert set(rng) >= {"python", "numpy", "torch"}


def test_a_damaged_checkpoint_is_one_line_naming_it(tmp_path):
    from types import SimpleNamespace

    from pgrpo.checkpoint import resume
    from pgrpo.distributed import make_accelerator
    from pgrpo.io import PgrpoError

    folder = tmp_path / "checkpoints/step-000003"
    folder.mkdir(parents=True)
    (folder / "state.pt").write_bytes(b"not a checkpoint")
    trainer = SimpleNamespace(accelerator=make_accelerator())  # resume reads before it restores
    message = r"step-000003/state.pt: unreadable checkpoint \(UnpicklingError\); delete "
    with pytest.raises(PgrpoError, match=message + r".*step-000003 to start over$"):
        resume(trainer, tmp_path, {})
