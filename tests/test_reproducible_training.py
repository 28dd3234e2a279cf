"""Two trainings with the same seed write the same bytes: every file of the adapter folder, and
the metrics up to their timings, whatever Python's string hash seed (``PYTHONHASHSEED``, random
per process unless set). peft keeps ``target_modules`` as a set, whose order follows that
seed; :func:`pgrpo.models.save_adapter` writes it sorted (CPU, the tiny model)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from entrypoints import run_entry

pytestmark = pytest.mark.slow

TARGET_MODULES = ["q_proj", "v_proj"]  # config.yaml's lora.target_modules
CONFIG = {
    "seed": 0,
    "model": {"precision": "fp32"},
    "lora": {"r": 4, "alpha": 8, "target_modules": TARGET_MODULES},
    "train": {"steps": 2, "prompts_per_step": 2, "group_size": 2, "max_new_tokens": 3,
              "threads": 1, "checkpoint_every": 0},
}  # fmt: skip


def set_order(hash_seed: int, names: list[str]) -> list[str]:
    """The order in which a Python process with ``PYTHONHASHSEED=hash_seed`` iterates
    ``set(names)`` (the set peft makes of ``target_modules``)."""
    code = f"print(' '.join(set({names!r})))"
    env = {"PYTHONHASHSEED": str(hash_seed), "PATH": ""}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    return done.stdout.split()


def hash_seeds_with_different_orders(names: list[str]) -> tuple[int, int]:
    """Two hash seeds whose processes iterate ``set(names)`` in different orders."""
    first = set_order(1, names)
    for seed in range(2, 64):
        if set_order(seed, names) != first:
            return 1, seed
    raise AssertionError(f"no hash seed in 2..63 orders {names} unlike seed 1")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """The tiny model, four users' MovieLens examples over ten items, two clusters."""
    from pgrpo.models import materialize_model

    root = tmp_path_factory.mktemp("reproducible")
    materialize_model("tiny", root / "model")
    data = root / "data"
    data.mkdir()
    items = [{"item_id": i, "title": f"Movie {i}", "year": 1990 + i, "genres": ["Drama"]}
             for i in range(1, 11)]  # fmt: skip
    (data / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    examples = [
        {"user_id": u, "position": 3, "history": [u, u + 1, u + 2], "target": u + 3,
         "candidates": [u + 3, u + 4, u + 5, u + 6], "answer": "A"}
        for u in range(1, 5)
    ]  # fmt: skip
    (data / "train.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples))
    clusters = {"num_clusters": 2, "sizes": [2, 2], "assignment": {"1": 0, "2": 1, "3": 0, "4": 1}}
    (root / "clusters.json").write_text(json.dumps(clusters))
    (root / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    return root


def train(root: Path, name: str, hash_seed: int) -> Path:
    """``python -m pgrpo.train`` on the inputs with ``PYTHONHASHSEED=hash_seed``; its folder."""
    out = root / name
    done = run_entry(
        "pgrpo.train", "--config", "config.yaml", "--method", "pgrpo", "--model", "model",
        "--data", "data", "--clusters", "clusters.json", "--seed", "0", "--out", name,
        "--no-progress", cwd=root, timeout=600,
        env={"PYTHONHASHSEED": str(hash_seed), "MLFLOW_TRACKING_URI": f"sqlite:///{out}.db"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def metrics(out: Path) -> list[dict]:
    """metrics.jsonl without the timings."""
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if not k.startswith("time/")} for row in rows]


def test_two_trainings_of_the_same_seed_write_byte_identical_adapters(inputs):
    seeds = hash_seeds_with_different_orders(TARGET_MODULES)
    assert set_order(seeds[0], TARGET_MODULES) != set_order(seeds[1], TARGET_MODULES)
    first, second = (train(inputs, f"run{s}", s) for s in seeds)
    files = sorted(p.name for p in (first / "adapter").iterdir())
    assert files == sorted(p.name for p in (second / "adapter").iterdir())
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(files)
    for name in files:
        ours, theirs = (out / "adapter" / name for out in (first, second))
        assert ours.read_bytes() == theirs.read_bytes(), f"{name} differs (hash seeds {seeds})"
    config = json.loads((first / "adapter" / "adapter_config.json").read_text())
    assert config["target_modules"] == sorted(TARGET_MODULES)
    assert metrics(first) == metrics(second)
